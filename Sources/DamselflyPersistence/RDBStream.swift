import DamselflyStorage

/// A stream as the RDB format sees it: live entries in ID order, the
/// stream's counters, and its consumer groups with their PELs.
public struct RDBStream: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var id: StreamID
        /// Flat field/value pairs.
        public var fields: [[UInt8]]
    }

    public struct PendingEntry: Equatable, Sendable {
        public var id: StreamID
        public var deliveryTime: Int64
        public var deliveryCount: UInt64
    }

    public struct Consumer: Equatable, Sendable {
        public var name: [UInt8]
        public var seenTime: Int64
        public var pending: [StreamID]
    }

    public struct Group: Equatable, Sendable {
        public var name: [UInt8]
        public var lastID: StreamID
        public var entriesRead: Int64
        public var pending: [PendingEntry]
        public var consumers: [Consumer]
    }

    public var entries: [Entry] = []
    public var lastID = StreamID.zero
    public var firstID = StreamID.zero
    public var maxDeletedID = StreamID.zero
    public var entriesAdded: UInt64 = 0
    public var groups: [Group] = []
    /// False for RDB types before 7.0's (15), which record no group read
    /// counters: loading estimates them from the stream, as Redis does.
    public var groupCountersRecorded = true

    public init() {}
}

// MARK: - Conversion

extension RDBStream {
    /// The RDB form of a stored stream.
    public init(_ stream: StreamValue) {
        entries = stream.range(.zero, .max).map { Entry(id: $0.id, fields: $0.fields) }
        lastID = stream.lastID
        firstID = stream.firstID
        maxDeletedID = stream.maxDeletedID
        entriesAdded = stream.entriesAdded
        groups = stream.groups.map { g in
            Group(
                name: g.name, lastID: g.lastID, entriesRead: g.entriesRead,
                pending: zip(g.pel.ids, g.pel.values).map {
                    PendingEntry(id: $0, deliveryTime: $1.deliveryTime, deliveryCount: UInt64(max($1.deliveryCount, 0)))
                },
                consumers: g.consumers.map { Consumer(name: $0.name, seenTime: $0.seenTime, pending: Array($0.pel.ids)) })
        }
    }

    /// The stored stream; NACKs are shared between the group PEL and their
    /// consumer's PEL, as Redis links them on load.
    public func storedValue() -> StreamValue {
        let s = StreamValue.restore(
            entries: entries.map { StreamValue.Entry(id: $0.id, fields: $0.fields) },
            lastID: lastID, entriesAdded: entriesAdded, maxDeletedID: maxDeletedID, firstID: firstID)
        for g in groups {
            let entriesRead = groupCountersRecorded
                ? g.entriesRead : s.entriesRead(upTo: g.lastID) ?? StreamGroup.invalidEntriesRead
            let group = StreamGroup(name: g.name, lastID: g.lastID, entriesRead: entriesRead)
            for p in g.pending {
                group.pel.set(p.id, StreamNACK(consumer: nil, deliveryTime: p.deliveryTime, deliveryCount: Int64(truncatingIfNeeded: p.deliveryCount)))
            }
            for c in g.consumers {
                let (consumer, _) = group.findOrCreateConsumer(c.name, nowMs: c.seenTime)
                consumer.seenTime = c.seenTime
                for id in c.pending {
                    guard let nack = group.pel[id] else { continue }
                    nack.consumer = consumer
                    consumer.pel.set(id, ())
                }
            }
            s.addGroup(group)
        }
        return s
    }
}

// MARK: - Encoding (RDB_TYPE_STREAM_LISTPACKS_2)

extension RDBEncoder {
    static func appendStreamID(_ out: inout [UInt8], _ id: StreamID) {
        for i in (0..<8).reversed() { out.append(UInt8(truncatingIfNeeded: id.ms >> (8 * UInt64(i)))) }
        for i in (0..<8).reversed() { out.append(UInt8(truncatingIfNeeded: id.seq >> (8 * UInt64(i)))) }
    }

    /// Redis 7.0's stream serialization: listpack nodes keyed by their big-endian
    /// master ID (a master entry of counts and field names, then per entry
    /// flags, ID deltas, fields or values, and the entry's element count),
    /// the counters, then every group with its PEL and consumers.
    static func appendStream(_ out: inout [UInt8], _ s: RDBStream) {
        // Nodes as Redis would cut them when appending (stream-node-max-entries / -bytes).
        var nodes: [ArraySlice<RDBStream.Entry>] = []
        var start = 0
        var bytes = 0
        let maxEntries = StreamValue.nodeMaxEntries, maxBytes = StreamValue.nodeMaxBytes
        for (i, e) in s.entries.enumerated() {
            let size = e.fields.reduce(0) { $0 + $1.count + 2 } + 8
            if i > start && ((maxEntries > 0 && i - start >= maxEntries) || bytes + size >= maxBytes) {
                nodes.append(s.entries[start..<i])
                start = i
                bytes = 0
            }
            bytes += size
        }
        if start < s.entries.count { nodes.append(s.entries[start...]) }
        appendLength(&out, nodes.count)
        for node in nodes {
            let master = node.first!
            var key: [UInt8] = []
            appendStreamID(&key, master.id)
            appendRaw(&out, key)
            let masterFields = stride(from: 0, to: master.fields.count, by: 2).map { master.fields[$0] }
            var lp = ListpackBuilder()
            lp.append(integer: Int64(node.count))
            lp.append(integer: 0)
            lp.append(integer: Int64(masterFields.count))
            for f in masterFields { lp.append(f) }
            lp.append(integer: 0)
            for e in node {
                let names = stride(from: 0, to: e.fields.count, by: 2).map { e.fields[$0] }
                let same = names == masterFields
                lp.append(integer: same ? 2 : 0)
                lp.append(integer: Int64(bitPattern: e.id.ms &- master.id.ms))
                lp.append(integer: Int64(bitPattern: e.id.seq &- master.id.seq))
                if !same { lp.append(integer: Int64(names.count)) }
                for (i, v) in e.fields.enumerated() where same ? i % 2 == 1 : true { lp.append(v) }
                lp.append(integer: Int64(names.count + 3 + (same ? 0 : names.count + 1)))
            }
            appendRaw(&out, lp.finish())
        }
        appendLength(&out, s.entries.count)
        appendLength(&out, s.lastID.ms)
        appendLength(&out, s.lastID.seq)
        appendLength(&out, s.firstID.ms)
        appendLength(&out, s.firstID.seq)
        appendLength(&out, s.maxDeletedID.ms)
        appendLength(&out, s.maxDeletedID.seq)
        appendLength(&out, s.entriesAdded)
        appendLength(&out, s.groups.count)
        for g in s.groups {
            appendRaw(&out, g.name)
            appendLength(&out, g.lastID.ms)
            appendLength(&out, g.lastID.seq)
            appendLength(&out, UInt64(bitPattern: g.entriesRead))
            appendLength(&out, g.pending.count)
            for p in g.pending {
                appendStreamID(&out, p.id)
                appendLE(&out, UInt64(bitPattern: p.deliveryTime), 8)
                appendLength(&out, p.deliveryCount)
            }
            appendLength(&out, g.consumers.count)
            for c in g.consumers {
                appendRaw(&out, c.name)
                appendLE(&out, UInt64(bitPattern: c.seenTime), 8)
                appendLength(&out, c.pending.count)
                for id in c.pending { appendStreamID(&out, id) }
            }
        }
    }
}

// MARK: - Decoding (types 15, 19 and 21)

extension RDBCursor {
    mutating func streamID() throws(RDBError) -> StreamID {
        let s = try take(16)
        var ms: UInt64 = 0, seq: UInt64 = 0
        for i in 0..<8 { ms = ms << 8 | UInt64(s[s.startIndex + i]) }
        for i in 8..<16 { seq = seq << 8 | UInt64(s[s.startIndex + i]) }
        return StreamID(ms, seq)
    }

    mutating func lengthValue() throws(RDBError) -> UInt64 {
        let start = position
        let (v, encoded) = try length()
        guard !encoded else { throw .corrupt(offset: start, reason: "encoded value where a length was expected") }
        return v
    }

    /// A stream of RDB type `type` (15: Redis 5–6, 19: 7.0, 21: 7.2).
    mutating func stream(type: UInt8) throws(RDBError) -> RDBStream {
        var s = RDBStream()
        let nodeCount = try count()
        for _ in 0..<nodeCount {
            let keyOffset = position
            let key = try string()
            guard key.count == 16 else { throw .corrupt(offset: keyOffset, reason: "stream node key of \(key.count) bytes") }
            var keyCursor = RDBCursor(bytes: key)
            let master = try keyCursor.streamID()
            let (blob, at) = try blob()
            let items = try ListpackDecoder.decode(blob, base: at)
            func int(_ i: Int) throws(RDBError) -> Int64 {
                guard i < items.count, let v = IntegerString.parse(items[i]) else {
                    throw .corrupt(offset: at, reason: "malformed stream listpack")
                }
                return v
            }
            guard !items.isEmpty else { throw .corrupt(offset: at, reason: "empty listpack inside stream") }
            let masterFieldCount = Int(try int(2))
            guard masterFieldCount >= 0, 3 + masterFieldCount < items.count else {
                throw .corrupt(offset: at, reason: "malformed stream master entry")
            }
            let masterFields = Array(items[3..<(3 + masterFieldCount)])
            var i = 3 + masterFieldCount + 1
            while i < items.count {
                let flags = try int(i)
                let ms = master.ms &+ UInt64(bitPattern: try int(i + 1))
                let seq = master.seq &+ UInt64(bitPattern: try int(i + 2))
                i += 3
                var fields: [[UInt8]] = []
                if flags & 2 != 0 {
                    guard i + masterFieldCount <= items.count else { throw .corrupt(offset: at, reason: "truncated stream entry") }
                    for (k, f) in masterFields.enumerated() {
                        fields.append(f)
                        fields.append(items[i + k])
                    }
                    i += masterFieldCount
                } else {
                    let n = Int(try int(i))
                    guard n >= 0, i + 1 + 2 * n <= items.count else { throw .corrupt(offset: at, reason: "truncated stream entry") }
                    fields = Array(items[(i + 1)..<(i + 1 + 2 * n)])
                    i += 1 + 2 * n
                }
                i += 1  // lp-count
                if flags & 1 == 0 { s.entries.append(RDBStream.Entry(id: StreamID(ms, seq), fields: fields)) }
            }
        }
        _ = try lengthValue()  // length: the live entries read above
        s.lastID = StreamID(try lengthValue(), try lengthValue())
        if type >= RDBType.streamListpacks2 {
            s.firstID = StreamID(try lengthValue(), try lengthValue())
            s.maxDeletedID = StreamID(try lengthValue(), try lengthValue())
            s.entriesAdded = try lengthValue()
        } else {
            s.firstID = s.entries.first?.id ?? .zero
            s.entriesAdded = UInt64(s.entries.count)
            s.groupCountersRecorded = false
        }
        let groupCount = try count()
        for _ in 0..<groupCount {
            let name = try string()
            let lastID = StreamID(try lengthValue(), try lengthValue())
            var entriesRead = StreamGroup.invalidEntriesRead
            if type >= RDBType.streamListpacks2 { entriesRead = Int64(bitPattern: try lengthValue()) }
            var group = RDBStream.Group(name: Array(name), lastID: lastID, entriesRead: entriesRead, pending: [], consumers: [])
            let pelCount = try count()
            for _ in 0..<pelCount {
                let id = try streamID()
                let time = Int64(bitPattern: try littleEndian(8))
                group.pending.append(RDBStream.PendingEntry(id: id, deliveryTime: time, deliveryCount: try lengthValue()))
            }
            let consumerCount = try count()
            for _ in 0..<consumerCount {
                let cname = try string()
                let seen = Int64(bitPattern: try littleEndian(8))
                if type >= RDBType.streamListpacks3 { _ = try littleEndian(8) }  // active time (7.2)
                var consumer = RDBStream.Consumer(name: Array(cname), seenTime: seen, pending: [])
                let n = try count()
                for _ in 0..<n { consumer.pending.append(try streamID()) }
                group.consumers.append(consumer)
            }
            s.groups.append(group)
        }
        return s
    }
}
