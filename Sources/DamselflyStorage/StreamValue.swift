#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A stream stored under one key: entries in packed nodes ordered by ID, the
/// stream's counters, and its consumer groups (Redis's `stream`).
///
/// Layout. Entries live in a sorted array of ``Node``s, each one byte buffer
/// of up to ``nodeMaxEntries`` entries (or about ``nodeMaxBytes`` bytes, the
/// limits of Redis's `stream-node-max-entries` / `-bytes`, read at each
/// append as CONFIG SET leaves them, so nodes split
/// where Redis's listpacks do and `~` trimming removes the same entries). A
/// node keeps its first entry's ID (the master ID) and field names (the
/// master fields); an entry is written as
///
///     flags · varint(ms − master.ms) · varint(seq) · [varint(n) · fields…] · values…
///
/// where a string is `varint(length) · bytes`, and the field names are left
/// out (flag ``sameFields``) when they equal the master fields, as they do in
/// job-like streams whose records all have the same shape. A 5-field record of
/// short values costs its value bytes plus about 9 bytes.
///
/// Lookup by ID is a binary search over nodes by master ID, then a scan of at
/// most 100 entries. XDEL marks an entry deleted in place (Redis does the
/// same); a node whose entries are all deleted is dropped. Trimming drops
/// whole nodes from the front, then (exact trimming only) marks entries.
///
/// A reference type mutated in place on its shard, through
/// `Database.modifyValue`, which re-reads ``memoryUsage`` (kept incrementally).
public final class StreamValue {
    // MARK: - Configuration

    /// Entries (live or deleted) a node holds before a new one starts
    /// (`stream-node-max-entries`; 0: no limit).
    public static var nodeMaxEntries: Int { EncodingLimits.streamNodeMaxEntries.load(ordering: .relaxed) }
    /// Listpack bytes a node may reach before a new one starts
    /// (`stream-node-max-bytes`; 0 or more than 1 GiB: Redis's 1 GiB cap).
    public static var nodeMaxBytes: Int {
        let limit = EncodingLimits.streamNodeMaxBytes.load(ordering: .relaxed)
        return limit == 0 || limit > 1 << 30 ? 1 << 30 : limit
    }
    /// Bytes of the object itself, for accounting.
    static let objectBytes = 128

    /// Entry flags.
    @usableFromInline static let deletedFlag: UInt8 = 1
    @usableFromInline static let sameFieldsFlag: UInt8 = 2

    /// One packed node.
    @usableFromInline
    struct Node {
        /// ID of the node's first entry; IDs in the node are stored relative to it.
        var master: StreamID
        /// ID of the node's last entry (deleted or not).
        var last: StreamID
        var bytes: [UInt8]
        /// Field names of the master entry, flat.
        var masterFields: [[UInt8]]
        var live: Int
        var total: Int
        /// What this node would take as a Redis listpack (see
        /// ``ListpackSize``): Redis cuts nodes by that size, so tracking it
        /// makes our nodes (and `~` trimming) end where Redis's do.
        var listpackBytes: Int

        var heapBytes: Int {
            var n = ByteArray.heapBytes(bytes) + (masterFields.capacity == 0 ? 0 : 32 + masterFields.capacity * 8)
            for f in masterFields { n += ByteArray.heapBytes(f) }
            return n
        }

        /// Writes one entry (see ``StreamValue/append(_:_:)-(_,StreamFields)``)
        /// in one access to the node; returns how much the heap bytes grew.
        mutating func append(_ id: StreamID, _ fields: StreamFields) -> Int {
            let before = ByteArray.heapBytes(bytes)
            let same = fields.namesEqual(masterFields)
            let pairs = fields.count / 2
            listpackBytes += ListpackSize.integer(same ? 2 : 0) + ListpackSize.integer(Int64(bitPattern: id.ms &- master.ms))
                + ListpackSize.integer(Int64(bitPattern: id.seq &- master.seq))
                + ListpackSize.integer(Int64(pairs + 3 + (same ? 0 : pairs + 1)))
                + (same ? fields.valuesListpackBytes
                    : ListpackSize.integer(Int64(pairs)) + fields.namesListpackBytes + fields.valuesListpackBytes)
            bytes.append(same ? StreamValue.sameFieldsFlag : 0)
            StreamValue.putVarint(&bytes, id.ms - master.ms)
            StreamValue.putVarint(&bytes, id.seq)
            if same {
                fields.bytes.withUnsafeBytes { p in
                    var at = 0
                    var value = false
                    while at < p.count {
                        var r = Reader(p: p, at: at)
                        let n = Int(r.varint())
                        if value { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[at..<(r.at + n)])) }
                        at = r.at + n
                        value.toggle()
                    }
                }
            } else {
                StreamValue.putVarint(&bytes, UInt64(pairs))
                bytes.append(contentsOf: fields.bytes)
            }
            last = id
            live += 1
            total += 1
            return ByteArray.heapBytes(bytes) - before
        }
    }

    /// One entry as replies see it: its ID and flat field/value pairs.
    public struct Entry: Equatable, Sendable {
        public var id: StreamID
        public var fields: [[UInt8]]
        public init(id: StreamID, fields: [[UInt8]]) {
            self.id = id
            self.fields = fields
        }
    }

    @usableFromInline var nodes: ContiguousArray<Node> = []
    /// Heap bytes of the nodes' buffers and master fields.
    var nodeBytes = 0

    /// Number of live entries.
    public private(set) var count = 0
    /// The greatest ID ever added (or set by XSETID).
    public var lastID = StreamID.zero
    /// Entries ever added (XSETID may set it).
    public var entriesAdded: UInt64 = 0
    /// The greatest ID removed by XDEL (or set by XSETID).
    public var maxDeletedID = StreamID.zero
    /// The first live entry's ID as last recorded (Redis's `first_id`).
    public internal(set) var firstID = StreamID.zero
    /// Consumer groups ordered by name.
    public internal(set) var groups: [StreamGroup] = []

    public init() {}

    public var typeName: String { "stream" }
    public var encodingName: String { "stream" }

    /// Number of nodes (XINFO STREAM's radix-tree-keys).
    public var nodeCount: Int { nodes.count }

    /// Approximate heap bytes, for MEMORY USAGE and used_memory.
    public var memoryUsage: Int {
        var n = StreamValue.objectBytes + nodeBytes + nodes.capacity * MemoryLayout<Node>.stride
        for g in groups { n += g.memoryUsage }
        return n
    }

    // MARK: - Encoding helpers

    @inlinable @inline(__always)
    static func varintSize(_ v: UInt64) -> Int {
        var size = 1
        var rest = v >> 7
        while rest != 0 {
            size += 1
            rest >>= 7
        }
        return size
    }

    @inlinable @inline(__always)
    static func putVarint(_ out: inout [UInt8], _ v: UInt64) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// Reads node bytes from an offset.
    @usableFromInline
    struct Reader {
        let p: UnsafeRawBufferPointer
        var at: Int

        @inline(__always)
        mutating func varint() -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let b = p[at]
                at += 1
                value |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
        }

        @inline(__always)
        mutating func string() -> [UInt8] {
            let n = Int(varint())
            let s = ByteArray.copy(UnsafeRawBufferPointer(rebasing: p[at..<(at + n)]))
            at += n
            return s
        }

        /// The next string in place (valid while the node's bytes are).
        @inline(__always)
        mutating func stringView() -> UnsafeRawBufferPointer {
            let n = Int(varint())
            defer { at += n }
            return UnsafeRawBufferPointer(rebasing: p[at..<(at + n)])
        }

        @inline(__always)
        mutating func skipString() {
            let n = Int(varint())
            at += n
        }
    }

    /// What the scan of one node entry sees.
    struct Header {
        var offset: Int
        var id: StreamID
        var deleted: Bool
    }

    /// Calls `body` for each entry of node `n` in order (stopping when it
    /// returns false), with its header and a reader positioned after it.
    func scan(_ n: Int, _ body: (Header, inout Reader) -> Bool) {
        let node = nodes[n]
        let fieldCount = node.masterFields.count
        node.bytes.withUnsafeBytes { p in
            var r = Reader(p: p, at: 0)
            while r.at < p.count {
                let offset = r.at
                let flags = p[r.at]
                r.at += 1
                let ms = node.master.ms &+ r.varint()
                let seq = r.varint()
                var entryReader = r
                let header = Header(offset: offset, id: StreamID(ms, seq), deleted: flags & StreamValue.deletedFlag != 0)
                if !body(header, &entryReader) { return }
                if flags & StreamValue.sameFieldsFlag != 0 {
                    for _ in 0..<fieldCount { r.skipString() }
                } else {
                    let pairs = Int(r.varint())
                    for _ in 0..<(pairs * 2) { r.skipString() }
                }
            }
        }
    }

    /// Decodes the fields of the entry whose body starts at `r` in node `n`.
    func fields(_ n: Int, flagsAt offset: Int, _ r: inout Reader) -> [[UInt8]] {
        let node = nodes[n]
        let flags = node.bytes[offset]
        if flags & StreamValue.sameFieldsFlag != 0 {
            var out: [[UInt8]] = []
            out.reserveCapacity(node.masterFields.count * 2)
            for f in node.masterFields {
                out.append(f)
                out.append(r.string())
            }
            return out
        }
        let pairs = Int(r.varint())
        var out: [[UInt8]] = []
        out.reserveCapacity(pairs * 2)
        for _ in 0..<(pairs * 2) { out.append(r.string()) }
        return out
    }

    // MARK: - Appending

    /// Why XADD's ID cannot be used.
    public enum AddIDError: Error, Equatable {
        /// Equal to or smaller than the last ID (or its sequence is exhausted).
        case notGreater
    }

    /// The ID XADD uses: the next one after ``lastID`` for `*` (nil explicit),
    /// the explicit one, or with `ms-*` the next sequence in that millisecond.
    public func resolveAddID(_ explicit: StreamID.Parsed?, nowMs: Int64) -> Result<StreamID, AddIDError> {
        let id: StreamID
        if let explicit {
            if explicit.seqGiven {
                id = explicit.id
            } else if explicit.id.ms == lastID.ms {
                guard lastID.seq != .max else { return .failure(.notGreater) }
                id = StreamID(lastID.ms, lastID.seq + 1)
            } else {
                id = explicit.id
            }
        } else {
            let now = UInt64(Swift.max(nowMs, 0))
            if now > lastID.ms {
                id = StreamID(now, 0)
            } else {
                guard let next = lastID.successor else { return .failure(.notGreater) }
                id = next
            }
        }
        guard lastID < id else { return .failure(.notGreater) }
        return .success(id)
    }

    /// Appends an entry with `id` (greater than ``lastID``) and flat
    /// field/value pairs.
    public func append(_ id: StreamID, _ pairs: [[UInt8]]) {
        precondition(pairs.count % 2 == 0)
        var fields = StreamFields(reservingBytes: pairs.reduce(pairs.count) { $0 + $1.count + 1 })
        for p in pairs { p.withUnsafeBytes { fields.append($0) } }
        append(id, fields)
    }

    /// Appends an entry with `id` (greater than ``lastID``) and its packed
    /// field/value pairs: the values (or, when the field names differ from
    /// the node's master fields, the whole pairs) are copied as runs of
    /// bytes already in the node's string encoding.
    public func append(_ id: StreamID, _ fields: StreamFields) {
        precondition(lastID < id && fields.count % 2 == 0)
        var needNode = nodes.isEmpty
        if let last = nodes.last {
            let maxEntries = StreamValue.nodeMaxEntries
            if last.listpackBytes + fields.dataBytes >= StreamValue.nodeMaxBytes || (maxEntries > 0 && last.total >= maxEntries) {
                needNode = true
            }
        }
        if needNode {
            let names = fields.names()
            let lp = ListpackSize.header + ListpackSize.integer(1) + ListpackSize.integer(0)
                + ListpackSize.integer(Int64(names.count)) + ListpackSize.integer(0) + fields.namesListpackBytes
            let node = Node(master: id, last: id, bytes: [], masterFields: names, live: 0, total: 0, listpackBytes: lp)
            nodes.append(node)
            nodeBytes += node.heapBytes
        }
        let n = nodes.count - 1
        let grown = nodes[n].append(id, fields)
        nodeBytes += grown
        if n > 0 && nodes[n].total == 1 { sealNode(n - 1) }
        count += 1
        entriesAdded &+= 1
        lastID = id
        if count == 1 { firstID = id }
    }

    /// Gives back a full node's spare capacity: it never grows again.
    func sealNode(_ n: Int) {
        guard nodes[n].bytes.capacity > nodes[n].bytes.count else { return }
        let before = ByteArray.heapBytes(nodes[n].bytes)
        nodes[n].bytes = nodes[n].bytes.withUnsafeBytes { ByteArray.copy($0) }
        nodeBytes += ByteArray.heapBytes(nodes[n].bytes) - before
    }

    // MARK: - Lookup

    /// Index of the last node whose master ID is ≤ `id` (0 when none is).
    func nodeIndex(atOrBefore id: StreamID) -> Int {
        var lo = 0, hi = nodes.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if nodes[mid].master <= id { lo = mid + 1 } else { hi = mid }
        }
        return Swift.max(lo - 1, 0)
    }

    /// The live entry with `id`, nil when absent.
    public func entry(_ id: StreamID) -> Entry? {
        guard !nodes.isEmpty else { return nil }
        let n = nodeIndex(atOrBefore: id)
        var found: Entry? = nil
        scan(n) { h, r in
            if h.id == id {
                if !h.deleted { found = Entry(id: id, fields: fields(n, flagsAt: h.offset, &r)) }
                return false
            }
            return h.id < id
        }
        return found
    }

    /// Whether a live entry has `id`.
    public func contains(_ id: StreamID) -> Bool {
        guard !nodes.isEmpty else { return false }
        let n = nodeIndex(atOrBefore: id)
        var found = false
        scan(n) { h, _ in
            if h.id == id {
                found = !h.deleted
                return false
            }
            return h.id < id
        }
        return found
    }

    /// Live entries with `start ≤ id ≤ end`, ascending (descending when
    /// `reverse`), at most `limit` of them (0: no limit).
    public func range(_ start: StreamID, _ end: StreamID, limit: Int = 0, reverse: Bool = false) -> [Entry] {
        var out: [Entry] = []
        guard !nodes.isEmpty, start <= end else { return out }
        if !reverse {
            visitRange(start, end, limit: limit, entry: { id, strings in
                out.append(Entry(id: id, fields: []))
                out[out.count - 1].fields.reserveCapacity(strings)
            }, string: { out[out.count - 1].fields.append(ByteArray.copy($0)) })
        } else {
            var n = nodeIndex(atOrBefore: end)
            while n >= 0 {
                if nodes[n].last < start { break }
                var part: [Entry] = []
                scan(n) { h, r in
                    if h.id > end { return false }
                    if h.id >= start && !h.deleted {
                        part.append(Entry(id: h.id, fields: fields(n, flagsAt: h.offset, &r)))
                    }
                    return true
                }
                for e in part.reversed() {
                    out.append(e)
                    if limit > 0 && out.count >= limit { return out }
                }
                n -= 1
            }
        }
        return out
    }

    /// Live entries with `start ≤ id ≤ end`, ascending, at most `limit` (0: no limit), read
    /// in place: `entry` gets each one's ID and number of strings (fields and values), then
    /// `string` each of those strings, valid only during the call. Replies encode from here
    /// without an `Entry` and an array per field. Returns how many entries it visited.
    @discardableResult
    public func visitRange(
        _ start: StreamID, _ end: StreamID, limit: Int,
        entry: (StreamID, Int) -> Void, string: (UnsafeRawBufferPointer) -> Void
    ) -> Int {
        guard !nodes.isEmpty, start <= end else { return 0 }
        var visited = 0
        var n = nodeIndex(atOrBefore: start)
        while n < nodes.count {
            if nodes[n].master > end { break }
            var done = false
            let masterFields = nodes[n].masterFields
            scan(n) { h, r in
                if h.id > end {
                    done = true
                    return false
                }
                if h.id >= start && !h.deleted {
                    if r.p[h.offset] & StreamValue.sameFieldsFlag != 0 {
                        entry(h.id, masterFields.count * 2)
                        for f in masterFields {
                            f.withUnsafeBytes(string)
                            string(r.stringView())
                        }
                    } else {
                        let pairs = Int(r.varint())
                        entry(h.id, pairs * 2)
                        for _ in 0..<(pairs * 2) { string(r.stringView()) }
                    }
                    visited += 1
                    if limit > 0 && visited >= limit {
                        done = true
                        return false
                    }
                }
                return true
            }
            if done { break }
            n += 1
        }
        return visited
    }

    /// The first or last live entry's ID (nil when empty).
    ///
    /// Reads entry headers only: every XREADGROUP `>` asks for the last one, and a
    /// reverse `range` would decode the fields of the whole last node to return one ID.
    public func edgeID(last: Bool) -> StreamID? {
        for i in nodes.indices {
            let n = last ? nodes.count - 1 - i : i
            // A node with nothing deleted ends with a live entry: no scan (the common case of
            // XREADGROUP `>` on a queue stream, which asks this on every call).
            if last && nodes[n].live == nodes[n].total { return nodes[n].last }
            var found: StreamID? = nil
            scan(n) { h, _ in
                if !h.deleted { found = h.id }
                return last || found == nil
            }
            if let found { return found }
        }
        return nil
    }

    /// Re-reads ``firstID`` from the entries (0-0 when empty).
    func refreshFirstID() {
        firstID = count == 0 ? .zero : (edgeID(last: false) ?? .zero)
    }

    // MARK: - Deleting

    /// Marks the entry at `offset` of node `n` deleted; drops the node when
    /// nothing in it lives any more. Returns whether the node was dropped.
    @discardableResult
    func markDeleted(_ n: Int, offset: Int) -> Bool {
        nodes[n].bytes[offset] |= StreamValue.deletedFlag
        nodes[n].live -= 1
        count -= 1
        if nodes[n].live == 0 {
            nodeBytes -= nodes[n].heapBytes
            nodes.remove(at: n)
            shrinkNodesIfSparse()
            return true
        }
        return false
    }

    /// XDEL: deletes the entries with these IDs; the number deleted.
    /// Updates the max deleted ID and the recorded first ID as Redis does.
    public func delete(_ ids: [StreamID]) -> Int {
        var deleted = 0
        var firstDeleted = false
        for id in ids where !nodes.isEmpty {
            let n = nodeIndex(atOrBefore: id)
            var at: Int? = nil
            scan(n) { h, _ in
                if h.id == id {
                    if !h.deleted { at = h.offset }
                    return false
                }
                return h.id < id
            }
            guard let offset = at else { continue }
            markDeleted(n, offset: offset)
            deleted += 1
            if id == firstID { firstDeleted = true }
            if maxDeletedID < id { maxDeletedID = id }
        }
        if deleted > 0 {
            if count == 0 {
                firstID = .zero
            } else if firstDeleted {
                refreshFirstID()
            }
        }
        return deleted
    }

    // MARK: - Trimming

    /// What to trim to.
    public enum TrimStrategy: Sendable {
        case maxLength(Int)
        case minID(StreamID)
    }

    /// XTRIM / XADD's trimming: removes entries from the front until the
    /// stream is at most `maxLength` long or starts at `minID`. With
    /// `approximate` only whole nodes go; `limit` (0: none) caps the
    /// entries removed. Returns the number removed.
    public func trim(_ strategy: TrimStrategy, approximate: Bool, limit: Int) -> Int {
        var deleted = 0
        while !nodes.isEmpty {
            if case .maxLength(let maxLength) = strategy, count <= maxLength { break }
            let live = nodes[0].live
            if limit > 0 && deleted + live > limit { break }
            let removeNode: Bool
            switch strategy {
            case .maxLength(let maxLength): removeNode = count - live >= maxLength
            case .minID(let minID): removeNode = nodes[0].last < minID
            }
            if removeNode {
                nodeBytes -= nodes[0].heapBytes
                nodes.remove(at: 0)
                count -= live
                deleted += live
                continue
            }
            if approximate { break }
            var offsets: [Int] = []
            var remaining = count
            scan(0) { h, _ in
                if h.deleted { return true }
                switch strategy {
                case .maxLength(let maxLength): if remaining <= maxLength { return false }
                case .minID(let minID): if h.id >= minID { return false }
                }
                offsets.append(h.offset)
                remaining -= 1
                return true
            }
            for offset in offsets {
                markDeleted(0, offset: offset)
                deleted += 1
            }
            break
        }
        if deleted > 0 {
            shrinkNodesIfSparse()
            refreshFirstID()
        }
        return deleted
    }

    /// Gives back the node array's storage when most of it is unused.
    func shrinkNodesIfSparse() {
        if nodes.isEmpty {
            nodes = []
        } else if nodes.capacity > 16 && nodes.count * 4 < nodes.capacity {
            var fresh = ContiguousArray<Node>()
            fresh.reserveCapacity(nodes.count)
            fresh.append(contentsOf: nodes)
            nodes = fresh
        }
    }

    // MARK: - Copying

    /// A deep copy (COPY), groups included.
    public func copy() -> StreamValue {
        let c = StreamValue()
        c.nodes = nodes
        c.nodeBytes = nodeBytes
        c.count = count
        c.lastID = lastID
        c.entriesAdded = entriesAdded
        c.maxDeletedID = maxDeletedID
        c.firstID = firstID
        c.groups = groups.map { $0.copy() }
        return c
    }

    /// Builds a stream from its parts (RDB load, RESTORE).
    public static func restore(
        entries: [Entry], lastID: StreamID, entriesAdded: UInt64, maxDeletedID: StreamID, firstID: StreamID?
    ) -> StreamValue {
        let s = StreamValue()
        for e in entries { s.append(e.id, e.fields) }
        s.lastID = Swift.max(lastID, s.lastID)
        s.entriesAdded = entriesAdded
        s.maxDeletedID = maxDeletedID
        if let firstID { s.firstID = firstID }
        return s
    }
}

/// An entry's field/value pairs packed as a stream node stores strings
/// (`varint(length) · bytes`, fields and values alternating), with the
/// sizes the node's cut needs. XADD builds it once from its arguments on the
/// connection's thread, so the shard copies runs of bytes instead of an
/// array per argument.
public struct StreamFields: Sendable {
    /// The packed strings.
    public private(set) var bytes: [UInt8] = []
    /// Number of strings (twice the pairs).
    public private(set) var count = 0
    /// Bytes of the strings themselves (what Redis adds to its node-size check).
    public private(set) var dataBytes = 0
    /// Listpack sizes of the field names and of the values (``ListpackSize``).
    var namesListpackBytes = 0
    var valuesListpackBytes = 0

    public init(reservingBytes: Int) {
        bytes.reserveCapacity(reservingBytes)
    }

    /// Adds the next string (a field name, then its value, and so on).
    public mutating func append(_ s: UnsafeRawBufferPointer) {
        StreamValue.putVarint(&bytes, UInt64(s.count))
        bytes.append(contentsOf: s)
        dataBytes += s.count
        if count % 2 == 0 { namesListpackBytes += ListpackSize.string(s) } else { valuesListpackBytes += ListpackSize.string(s) }
        count += 1
    }

    /// The field names, each its own array (a new node's master fields).
    func names() -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(count / 2)
        bytes.withUnsafeBytes { p in
            var r = StreamValue.Reader(p: p, at: 0)
            for i in 0..<count {
                if i % 2 == 0 { out.append(r.string()) } else { r.skipString() }
            }
        }
        return out
    }

    /// Whether the field names are `names`, in order.
    func namesEqual(_ names: [[UInt8]]) -> Bool {
        guard names.count * 2 == count else { return false }
        return bytes.withUnsafeBytes { p in
            var r = StreamValue.Reader(p: p, at: 0)
            for name in names {
                let n = Int(r.varint())
                guard n == name.count, n == 0 || name.withUnsafeBytes({ memcmp($0.baseAddress!, p.baseAddress! + r.at, n) == 0 }) else {
                    return false
                }
                r.at += n
                r.skipString()
            }
            return true
        }
    }
}

/// Sizes of Redis listpack elements, for cutting stream nodes where Redis does.
enum ListpackSize {
    /// Total-bytes and count header plus the end byte.
    static let header = 7

    static func backlen(_ l: Int) -> Int {
        l <= 127 ? 1 : l < 16383 ? 2 : l < 2_097_151 ? 3 : l < 268_435_455 ? 4 : 5
    }

    static func integer(_ v: Int64) -> Int {
        let encoded: Int
        if v >= 0 && v <= 127 {
            encoded = 1
        } else if v >= -4096 && v <= 4095 {
            encoded = 2
        } else if v >= Int64(Int16.min) && v <= Int64(Int16.max) {
            encoded = 3
        } else if v >= -(1 << 23) && v < (1 << 23) {
            encoded = 4
        } else if v >= Int64(Int32.min) && v <= Int64(Int32.max) {
            encoded = 5
        } else {
            encoded = 9
        }
        return encoded + backlen(encoded)
    }

    /// A string element; one that reads as an integer is stored as one.
    static func string(_ s: [UInt8]) -> Int {
        s.withUnsafeBytes { string($0) }
    }

    static func string(_ s: UnsafeRawBufferPointer) -> Int {
        if s.count <= 20, let v = RedisNumber.parseInt64(s) { return integer(v) }
        let encoded = s.count < 64 ? 1 + s.count : s.count < 4096 ? 2 + s.count : 5 + s.count
        return encoded + backlen(encoded)
    }
}
