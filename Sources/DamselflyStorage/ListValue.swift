#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A list stored under one key: a deque of packed nodes, the shape of Redis's
/// quicklist of listpacks.
///
/// Each node is one `malloc`ed buffer holding many entries back to back; an
/// entry is `varint(length) · bytes · backlen`, where the backlen is the same
/// varint written back to front so an entry can be found from its end (what
/// lets a pop at either end, and a walk backwards, run without an index).
/// A 120-byte job payload costs 122 bytes, and a node of about 8 KB (Redis's
/// `list-max-listpack-size -2`) holds 67 of them: no per-element object, no
/// per-element allocation, and O(1) push and pop at both ends (a node's live
/// bytes are the range `start..<end` of its buffer, so a pop only moves an
/// offset, and a push at the front writes below `start`).
///
/// The nodes themselves sit in a ring buffer, so adding or dropping a node at
/// either end is O(1) too; index access walks node counts from the nearer end.
///
/// A reference type: the value lives in one shard's keyspace and is mutated
/// in place there (through `Database.modifyValue`, which re-reads
/// ``memoryUsage``, kept incrementally so that is O(1)); replies copy out what
/// they send. Not thread-safe: only its shard touches it.
public final class ListValue {
    // MARK: - Layout

    /// Most entry bytes a node takes before a new node is started. The
    /// request rounds to an 8 KB `malloc` chunk (the 8 KB node of Redis's
    /// default `list-max-listpack-size -2`); an element larger than this gets
    /// a node of its own.
    @usableFromInline static let nodeLimit = 8192 - 16

    /// Smallest buffer a first node starts with; it doubles up to ``nodeLimit``.
    @usableFromInline static let firstNodeBytes = 48

    /// Bytes `malloc` keeps in front of every chunk (glibc), for accounting.
    @usableFromInline static let mallocOverhead = 8

    /// Bytes of the object itself (header and stored properties), for accounting.
    @usableFromInline static let objectBytes = 64

    /// One packed node: live entries occupy `base[start..<end]`.
    @usableFromInline
    struct Node {
        @usableFromInline var base: UnsafeMutablePointer<UInt8>
        @usableFromInline var capacity: Int
        @usableFromInline var start: Int
        @usableFromInline var end: Int
        @usableFromInline var count: Int

        @inlinable var used: Int { end - start }
    }

    /// Ring buffer of nodes (capacity a power of two, or zero).
    @usableFromInline var ring: UnsafeMutablePointer<Node>?
    @usableFromInline var ringCapacity = 0
    /// Physical slot of logical node 0.
    @usableFromInline var ringHead = 0
    @usableFromInline var nodeCount = 0

    /// Number of elements.
    @inlinable public var count: Int { elementCount }
    @usableFromInline var elementCount = 0

    /// Bytes held by node buffers (capacity plus malloc's chunk header).
    @usableFromInline var nodeBytes = 0

    public init() {}

    deinit {
        for i in 0..<nodeCount { free(node(i).base) }
        ring?.deallocate()
    }

    /// The name TYPE reports.
    public var typeName: String { "list" }

    /// The name OBJECT ENCODING reports. Redis 7.0 stores every list as a
    /// quicklist (of listpack nodes), whatever its size — "listpack" as a list
    /// encoding only arrived in 7.2 — so the name never changes.
    public var encodingName: String { "quicklist" }

    /// Approximate heap bytes, for MEMORY USAGE and used_memory: the node
    /// buffers as allocated, the ring of node headers, and the object.
    public var memoryUsage: Int {
        ListValue.objectBytes + nodeBytes
            + (ringCapacity == 0 ? 0 : ringCapacity * MemoryLayout<Node>.stride + ListValue.mallocOverhead)
    }

    /// Number of nodes (for tests and diagnostics).
    public var nodeCountForTesting: Int { nodeCount }

    // MARK: - Entry coding

    /// Bytes of the varint that encodes `n` (7 bits a byte).
    @inlinable @inline(__always)
    static func varintSize(_ n: Int) -> Int {
        if n < 0x80 { return 1 }
        if n < 0x4000 { return 2 }
        var size = 3
        var rest = n >> 21
        while rest != 0 {
            size += 1
            rest >>= 7
        }
        return size
    }

    /// Bytes an entry of `length` data bytes takes: header, data, backlen.
    @inlinable @inline(__always)
    static func entrySize(_ length: Int) -> Int { length + 2 * varintSize(length) }

    /// Writes the entry for `bytes` at `p`; returns its size.
    @inlinable @inline(__always)
    @discardableResult
    static func writeEntry(_ p: UnsafeMutablePointer<UInt8>, _ bytes: UnsafeRawBufferPointer) -> Int {
        let length = bytes.count
        if length < 0x80 {
            p[0] = UInt8(length)
            if length > 0 { (p + 1).update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: length) }
            p[1 + length] = UInt8(length)
            return length + 2
        }
        let h = varintSize(length)
        var v = length
        for i in 0..<h {
            let more = i < h - 1
            let byte = UInt8(v & 0x7f) | (more ? 0x80 : 0)
            p[i] = byte
            // The backlen holds the same bytes in reverse order, low group last.
            p[h + length + h - 1 - i] = byte
            v >>= 7
        }
        (p + h).update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: length)
        return length + 2 * h
    }

    /// Reads the header of the entry at `p`: data length and header size.
    @inlinable @inline(__always)
    static func readHeader(_ p: UnsafeMutablePointer<UInt8>) -> (length: Int, header: Int) {
        let b0 = p[0]
        if b0 < 0x80 { return (Int(b0), 1) }
        var value = 0, shift = 0, i = 0
        while true {
            let b = p[i]
            value |= Int(b & 0x7f) << shift
            i += 1
            if b & 0x80 == 0 { return (value, i) }
            shift += 7
        }
    }

    /// Reads the backlen of the entry that ends just before `end`: its data
    /// length and header size.
    @inlinable @inline(__always)
    static func readBacklen(_ end: UnsafeMutablePointer<UInt8>) -> (length: Int, header: Int) {
        let b0 = end[-1]
        if b0 < 0x80 { return (Int(b0), 1) }
        var value = 0, shift = 0, i = 1
        while true {
            let b = end[-i]
            value |= Int(b & 0x7f) << shift
            if b & 0x80 == 0 { return (value, i) }
            i += 1
            shift += 7
        }
    }

    // MARK: - Node ring

    @inlinable @inline(__always)
    func slot(_ i: Int) -> Int { (ringHead + i) & (ringCapacity - 1) }

    @inlinable @inline(__always)
    func node(_ i: Int) -> Node { ring![slot(i)] }

    @inlinable @inline(__always)
    func nodePointer(_ i: Int) -> UnsafeMutablePointer<Node> { ring! + slot(i) }

    /// Makes room for one more node header.
    @usableFromInline
    func growRingIfFull() {
        guard nodeCount == ringCapacity else { return }
        let newCapacity = max(1, ringCapacity * 2)
        let fresh = UnsafeMutablePointer<Node>.allocate(capacity: newCapacity)
        for i in 0..<nodeCount { (fresh + i).initialize(to: node(i)) }
        ring?.deallocate()
        ring = fresh
        ringCapacity = newCapacity
        ringHead = 0
    }

    /// Shrinks the ring when it is mostly empty, so a drained queue gives its
    /// node headers back.
    @usableFromInline
    func shrinkRingIfSparse() {
        guard ringCapacity > 8 && nodeCount * 4 <= ringCapacity else { return }
        let newCapacity = ringCapacity / 2
        let fresh = UnsafeMutablePointer<Node>.allocate(capacity: newCapacity)
        for i in 0..<nodeCount { (fresh + i).initialize(to: node(i)) }
        ring?.deallocate()
        ring = fresh
        ringCapacity = newCapacity
        ringHead = 0
    }

    /// Inserts `n` as logical node `i` (0...nodeCount).
    @usableFromInline
    func insertNode(_ n: Node, at i: Int) {
        growRingIfFull()
        if i == 0 {
            ringHead = (ringHead - 1) & (ringCapacity - 1)
        } else if i < nodeCount {
            var j = nodeCount
            while j > i {
                ring![slot(j)] = ring![slot(j - 1)]
                j -= 1
            }
        }
        nodeCount += 1
        ring![slot(i)] = n
    }

    /// Frees logical node `i` and closes the gap.
    @usableFromInline
    func removeNode(at i: Int) {
        let n = node(i)
        nodeBytes -= n.capacity + ListValue.mallocOverhead
        free(n.base)
        if i == 0 {
            ringHead = (ringHead + 1) & (ringCapacity - 1)
        } else {
            for j in i..<(nodeCount - 1) { ring![slot(j)] = ring![slot(j + 1)] }
        }
        nodeCount -= 1
        if nodeCount == 0 {
            ring?.deallocate()
            ring = nil
            ringCapacity = 0
            ringHead = 0
        } else {
            shrinkRingIfSparse()
        }
    }

    /// A new node buffer of at least `bytes` (the usable size malloc gives).
    @usableFromInline
    func allocateNode(bytes: Int) -> Node {
        let base = malloc(bytes)!.assumingMemoryBound(to: UInt8.self)
        let capacity = Self.usableSize(base, requested: bytes)
        nodeBytes += capacity + ListValue.mallocOverhead
        return Node(base: base, capacity: capacity, start: 0, end: 0, count: 0)
    }

    /// The capacity of a buffer allocated for `requested` bytes. (glibc's
    /// `malloc_usable_size` is not exported to Swift; the request is exact
    /// enough: node sizes are chosen to fill malloc's chunks.)
    @inlinable
    static func usableSize(_ p: UnsafeMutableRawPointer, requested: Int) -> Int { requested }

    /// Resizes node `i`'s buffer to at least `bytes`, keeping its live bytes
    /// at the same offsets.
    @usableFromInline
    func reallocateNode(_ i: Int, bytes: Int) {
        let p = nodePointer(i)
        let base = realloc(p.pointee.base, bytes)!.assumingMemoryBound(to: UInt8.self)
        let capacity = Self.usableSize(base, requested: bytes)
        nodeBytes += capacity - p.pointee.capacity
        p.pointee.base = base
        p.pointee.capacity = capacity
    }

    /// The buffer size a growing node moves to when it needs `need` more bytes.
    @inlinable
    func grownCapacity(_ n: Node, need: Int) -> Int {
        let required = n.used + need
        if required > ListValue.nodeLimit { return required }
        return min(ListValue.nodeLimit, max(required, n.capacity * 2))
    }

    /// Whether node `n` may take another entry of `size` bytes.
    @inlinable @inline(__always)
    static func fits(_ n: Node, _ size: Int) -> Bool {
        n.used + size <= nodeLimit
    }

    /// Size of a node started next to a full one: a whole node at once (a
    /// queue fills it anyway), or exactly one oversized entry.
    @inlinable
    func freshNodeBytes(for size: Int) -> Int {
        if size > ListValue.nodeLimit { return size }
        return count == 0 ? max(size, ListValue.firstNodeBytes) : ListValue.nodeLimit
    }

    // MARK: - Push and pop

    /// LPUSH one element: O(1).
    @inlinable
    public func pushFront(_ bytes: UnsafeRawBufferPointer) {
        let size = ListValue.entrySize(bytes.count)
        if nodeCount == 0 || !ListValue.fits(node(0), size) {
            var n = allocateNode(bytes: freshNodeBytes(for: size))
            n.start = n.capacity
            n.end = n.capacity
            insertNode(n, at: 0)
        }
        let p = nodePointer(0)
        if p.pointee.start < size { makeFrontRoom(0, size) }
        p.pointee.start -= size
        ListValue.writeEntry(p.pointee.base + p.pointee.start, bytes)
        p.pointee.count += 1
        elementCount += 1
    }

    /// RPUSH one element: O(1).
    @inlinable
    public func pushBack(_ bytes: UnsafeRawBufferPointer) {
        let size = ListValue.entrySize(bytes.count)
        if nodeCount == 0 || !ListValue.fits(node(nodeCount - 1), size) {
            insertNode(allocateNode(bytes: freshNodeBytes(for: size)), at: nodeCount)
        }
        let i = nodeCount - 1
        let p = nodePointer(i)
        if p.pointee.capacity - p.pointee.end < size { makeBackRoom(i, size) }
        ListValue.writeEntry(p.pointee.base + p.pointee.end, bytes)
        p.pointee.end += size
        p.pointee.count += 1
        elementCount += 1
    }

    @inlinable
    public func pushFront(_ bytes: [UInt8]) { bytes.withUnsafeBytes { pushFront($0) } }

    @inlinable
    public func pushBack(_ bytes: [UInt8]) { bytes.withUnsafeBytes { pushBack($0) } }

    /// Gets `size` free bytes below `start` of node `i` (which fits them):
    /// moves the live bytes up, growing the buffer first if it is too small.
    /// Most of the free space goes to the front, some stays at the back, so
    /// pushes alternating between the two ends of a one-node list do not
    /// move the bytes every time.
    @usableFromInline
    func makeFrontRoom(_ i: Int, _ size: Int) {
        var n = node(i)
        if n.capacity - n.used < size {
            reallocateNode(i, bytes: grownCapacity(n, need: size))
            n = node(i)
        }
        let free = n.capacity - n.used
        let back = min((free - size) / 4, free - size)
        let newStart = n.capacity - back - n.used
        memmove(n.base + newStart, n.base + n.start, n.used)
        let p = nodePointer(i)
        p.pointee.start = newStart
        p.pointee.end = newStart + n.used
    }

    /// Gets `size` free bytes above `end` of node `i` (mirror of ``makeFrontRoom(_:_:)``).
    @usableFromInline
    func makeBackRoom(_ i: Int, _ size: Int) {
        var n = node(i)
        if n.capacity - n.used < size {
            reallocateNode(i, bytes: grownCapacity(n, need: size))
            n = node(i)
            if n.capacity - n.end >= size { return }
        }
        let free = n.capacity - n.used
        let front = min((free - size) / 4, free - size)
        memmove(n.base + front, n.base + n.start, n.used)
        let p = nodePointer(i)
        p.pointee.start = front
        p.pointee.end = front + n.used
    }

    /// LPOP one element: O(1) (plus the copy of its bytes). (`[UInt8](bytes)`: inlined
    /// into another module, `ByteArray.copy`'s uninitialised-capacity array takes the run
    /// time's unspecialised allocation path, several times the copy's cost.)
    @inlinable
    public func popFront() -> [UInt8]? { pop(fromFront: true) { [UInt8]($0) } }

    /// RPOP one element: O(1) (plus the copy of its bytes).
    @inlinable
    public func popBack() -> [UInt8]? { pop(fromFront: false) { [UInt8]($0) } }

    /// Removes the first (`fromFront`) or the last element, handing its bytes to
    /// `body` while they are still in the node: a reply can be built from them
    /// with no copy of the element in between. Nil when the list is empty.
    @inlinable
    public func pop<R>(fromFront: Bool, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard nodeCount > 0 else { return nil }
        if fromFront {
            let p = nodePointer(0)
            let entry = p.pointee.base + p.pointee.start
            let (length, header) = ListValue.readHeader(entry)
            let result = body(UnsafeRawBufferPointer(start: entry + header, count: length))
            dropFront(p, length + 2 * header)
            return result
        }
        let p = nodePointer(nodeCount - 1)
        let end = p.pointee.base + p.pointee.end
        let (length, header) = ListValue.readBacklen(end)
        let result = body(UnsafeRawBufferPointer(start: end - header - length, count: length))
        dropBack(p, length + 2 * header)
        return result
    }

    @inlinable
    public func popFront(_ n: Int) -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(min(n, count))
        while out.count < n, let v = popFront() { out.append(v) }
        return out
    }

    @inlinable
    public func popBack(_ n: Int) -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(min(n, count))
        while out.count < n, let v = popBack() { out.append(v) }
        return out
    }

    /// The first element without removing it.
    @inlinable
    public var first: [UInt8]? {
        guard nodeCount > 0 else { return nil }
        let n = node(0)
        let (length, header) = ListValue.readHeader(n.base + n.start)
        return ByteArray.copy(UnsafeRawBufferPointer(start: n.base + n.start + header, count: length))
    }

    /// The last element without removing it.
    @inlinable
    public var last: [UInt8]? {
        guard nodeCount > 0 else { return nil }
        let n = node(nodeCount - 1)
        let (length, header) = ListValue.readBacklen(n.base + n.end)
        return ByteArray.copy(UnsafeRawBufferPointer(start: n.base + n.end - header - length, count: length))
    }

    @inlinable
    func dropFront(_ p: UnsafeMutablePointer<Node>, _ size: Int) {
        p.pointee.start += size
        p.pointee.count -= 1
        elementCount -= 1
        if p.pointee.count == 0 { removeNode(at: 0) }
    }

    @inlinable
    func dropBack(_ p: UnsafeMutablePointer<Node>, _ size: Int) {
        p.pointee.end -= size
        p.pointee.count -= 1
        elementCount -= 1
        if p.pointee.count == 0 { removeNode(at: nodeCount - 1) }
    }

    // MARK: - Cursors

    /// Where an entry sits: logical node and byte offset of its header.
    public struct Position: Equatable {
        @usableFromInline var node: Int
        @usableFromInline var offset: Int
        @inlinable init(node: Int, offset: Int) {
            self.node = node
            self.offset = offset
        }
    }

    /// The entry at `position`: its data and its total size.
    @inlinable @inline(__always)
    func entry(at position: Position) -> (data: UnsafeRawBufferPointer, size: Int) {
        let n = node(position.node)
        let p = n.base + position.offset
        let (length, header) = ListValue.readHeader(p)
        return (UnsafeRawBufferPointer(start: p + header, count: length), length + 2 * header)
    }

    /// The position after `position` (which holds an entry of `size`), or nil at the end.
    @inlinable @inline(__always)
    func next(_ position: Position, size: Int) -> Position? {
        let offset = position.offset + size
        if offset < node(position.node).end { return Position(node: position.node, offset: offset) }
        let i = position.node + 1
        return i < nodeCount ? Position(node: i, offset: node(i).start) : nil
    }

    /// The position before `position`, or nil at the start.
    @inlinable @inline(__always)
    func previous(_ position: Position) -> Position? {
        var i = position.node
        var end = position.offset
        if end == node(i).start {
            i -= 1
            if i < 0 { return nil }
            end = node(i).end
        }
        let n = node(i)
        let (length, header) = ListValue.readBacklen(n.base + end)
        return Position(node: i, offset: end - length - 2 * header)
    }

    /// Position of the element at `index` (0..<count), walking node counts
    /// from the nearer end, then entries from the nearer end of the node.
    @inlinable
    public func position(of index: Int) -> Position {
        precondition(index >= 0 && index < count, "list index out of range")
        var nodeIndex: Int
        var within: Int
        if index < count / 2 {
            nodeIndex = 0
            within = index
            while within >= node(nodeIndex).count {
                within -= node(nodeIndex).count
                nodeIndex += 1
            }
        } else {
            nodeIndex = nodeCount - 1
            var fromBack = count - 1 - index
            while fromBack >= node(nodeIndex).count {
                fromBack -= node(nodeIndex).count
                nodeIndex -= 1
            }
            within = node(nodeIndex).count - 1 - fromBack
        }
        let n = node(nodeIndex)
        if within <= n.count / 2 {
            var offset = n.start
            for _ in 0..<within {
                let (length, header) = ListValue.readHeader(n.base + offset)
                offset += length + 2 * header
            }
            return Position(node: nodeIndex, offset: offset)
        }
        var end = n.end
        for _ in 0..<(n.count - within) {
            let (length, header) = ListValue.readBacklen(n.base + end)
            end -= length + 2 * header
        }
        return Position(node: nodeIndex, offset: end)
    }

    // MARK: - Reading

    /// LINDEX: the element at `index` (0..<count).
    @inlinable
    public func element(at index: Int) -> [UInt8] {
        ByteArray.copy(entry(at: position(of: index)).data)
    }

    /// Calls `body` with each element from `index` towards the tail (or the
    /// head when `reverse`), with its index, until `body` returns false.
    @inlinable
    public func forEach(from index: Int, reverse: Bool = false, _ body: (UnsafeRawBufferPointer, Int) -> Bool) {
        guard index >= 0 && index < count else { return }
        var position: Position? = self.position(of: index)
        var i = index
        while let p = position {
            let (data, size) = entry(at: p)
            if !body(data, i) { return }
            if reverse {
                position = previous(p)
                i -= 1
            } else {
                position = next(p, size: size)
                i += 1
            }
        }
    }

    /// LRANGE: the elements `start...end` (already clamped into range).
    @inlinable
    public func range(_ start: Int, _ end: Int) -> [[UInt8]] {
        var out: [[UInt8]] = []
        guard start <= end && start < count else { return out }
        out.reserveCapacity(end - start + 1)
        forEach(from: start) { data, i in
            out.append(ByteArray.copy(data))
            return i < end
        }
        return out
    }

    /// Every element, head to tail (tests, COPY).
    public var elements: [[UInt8]] { count == 0 ? [] : range(0, count - 1) }

    // MARK: - Changing the middle

    /// LSET: replaces the element at `index` (0..<count).
    public func replace(at index: Int, with bytes: UnsafeRawBufferPointer) {
        let position = self.position(of: index)
        let (data, size) = entry(at: position)
        if data.count == bytes.count {
            // Same length, same entry size: overwrite the data in place.
            if bytes.count > 0 {
                UnsafeMutableRawPointer(mutating: data.baseAddress!).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            }
            return
        }
        removeEntry(at: position, size: size)
        insertEntry(bytes, node: position.node, offset: position.offset)
    }

    /// LINSERT: inserts `bytes` before (or after) the first element equal to
    /// `pivot`; whether the pivot was found.
    public func insert(_ bytes: UnsafeRawBufferPointer, pivot: UnsafeRawBufferPointer, after: Bool) -> Bool {
        guard nodeCount > 0 else { return false }
        var position: Position? = Position(node: 0, offset: node(0).start)
        while let p = position {
            let (data, size) = entry(at: p)
            if ListValue.equal(data, pivot) {
                let offset = after ? p.offset + size : p.offset
                insertEntry(bytes, node: p.node, offset: offset)
                return true
            }
            position = next(p, size: size)
        }
        return false
    }

    @inlinable @inline(__always)
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    /// Removes the entry of `size` at `position` from its node, keeping the
    /// node even when it empties (the caller refills or drops it).
    func removeEntry(at position: Position, size: Int) {
        let p = nodePointer(position.node)
        let n = p.pointee
        memmove(n.base + position.offset, n.base + position.offset + size, n.end - position.offset - size)
        p.pointee.end -= size
        p.pointee.count -= 1
        elementCount -= 1
    }

    /// Inserts an entry at byte `offset` of node `i` (an entry boundary,
    /// `end` included): in place when the node has room under the limit,
    /// otherwise the node is split there and the entry goes to the side
    /// with room, or into a node of its own between the halves.
    func insertEntry(_ bytes: UnsafeRawBufferPointer, node i: Int, offset: Int) {
        let size = ListValue.entrySize(bytes.count)
        var n = node(i)
        if ListValue.fits(n, size) || n.count == 0 {
            var offset = offset
            if n.capacity - n.used < size {
                reallocateNode(i, bytes: grownCapacity(n, need: size))
                n = node(i)
            }
            let p = nodePointer(i)
            if n.capacity - n.end >= size {
                memmove(n.base + offset + size, n.base + offset, n.end - offset)
                p.pointee.end += size
            } else if n.start >= size {
                memmove(n.base + n.start - size, n.base + n.start, offset - n.start)
                p.pointee.start -= size
                offset -= size
            } else {
                // Free space split between the ends: pack the bytes at 0 first.
                memmove(n.base, n.base + n.start, n.used)
                offset -= n.start
                p.pointee.start = 0
                p.pointee.end = n.used
                memmove(n.base + offset + size, n.base + offset, n.used - offset)
                p.pointee.end += size
            }
            ListValue.writeEntry(p.pointee.base + offset, bytes)
            p.pointee.count += 1
            elementCount += 1
            return
        }
        // Split node i at `offset`: the tail half moves to a new node i + 1.
        if offset < n.end {
            let tailBytes = n.end - offset
            var tail = allocateNode(bytes: tailBytes)
            memcpy(tail.base, n.base + offset, tailBytes)
            tail.end = tailBytes
            var moved = 0
            var o = 0
            while o < tailBytes {
                let (length, header) = ListValue.readHeader(tail.base + o)
                o += length + 2 * header
                moved += 1
            }
            tail.count = moved
            let p = nodePointer(i)
            p.pointee.end = offset
            p.pointee.count -= moved
            insertNode(tail, at: i + 1)
        }
        if node(i).count == 0 || ListValue.fits(node(i), size) {
            // Room at the end of the head half (or the split emptied it).
            insertEntry(bytes, node: i, offset: node(i).end)
            return
        }
        if i + 1 < nodeCount && ListValue.fits(node(i + 1), size) {
            insertEntry(bytes, node: i + 1, offset: node(i + 1).start)
            return
        }
        var single = allocateNode(bytes: size)
        ListValue.writeEntry(single.base, bytes)
        single.end = size
        single.count = 1
        insertNode(single, at: i + 1)
        elementCount += 1
    }

    /// LREM: removes up to `limit` elements equal to `value` (all when
    /// `limit` is 0), scanning from the tail when `fromTail`; how many went.
    public func removeAll(equalTo value: UnsafeRawBufferPointer, limit: Int, fromTail: Bool) -> Int {
        var removed = 0
        var i = fromTail ? nodeCount - 1 : 0
        while i >= 0 && i < nodeCount && (limit == 0 || removed < limit) {
            let quota = limit == 0 ? Int.max : limit - removed
            let n = compactNode(i, removing: value, quota: quota, fromTail: fromTail)
            removed += n
            if node(i).count == 0 {
                removeNode(at: i)
                if fromTail { i -= 1 }
            } else {
                i += fromTail ? -1 : 1
            }
        }
        if removed > 0 { mergeSmallNodes() }
        return removed
    }

    /// Drops from node `i` up to `quota` entries equal to `value` (the last
    /// ones when `fromTail`), sliding the kept entries together in place.
    func compactNode(_ i: Int, removing value: UnsafeRawBufferPointer, quota: Int, fromTail: Bool) -> Int {
        let p = nodePointer(i)
        let n = p.pointee
        var skipMatches = 0
        if fromTail {
            // Count matches first, so the first ones (nearer the head) stay.
            var matches = 0
            var o = n.start
            while o < n.end {
                let (length, header) = ListValue.readHeader(n.base + o)
                if ListValue.equal(UnsafeRawBufferPointer(start: n.base + o + header, count: length), value) { matches += 1 }
                o += length + 2 * header
            }
            if matches == 0 { return 0 }
            skipMatches = max(0, matches - quota)
        }
        var read = n.start, write = n.start
        var removed = 0, seen = 0
        while read < n.end {
            let (length, header) = ListValue.readHeader(n.base + read)
            let size = length + 2 * header
            var drop = false
            if removed < quota && ListValue.equal(UnsafeRawBufferPointer(start: n.base + read + header, count: length), value) {
                seen += 1
                drop = seen > skipMatches
            }
            if drop {
                removed += 1
            } else {
                if write != read { memmove(n.base + write, n.base + read, size) }
                write += size
            }
            read += size
        }
        p.pointee.end = write
        p.pointee.count -= removed
        elementCount -= removed
        return removed
    }

    /// Merges neighbouring nodes whose entries fit in one node when at least
    /// one of them is under a quarter full, so deletions in the middle do
    /// not leave a trail of near-empty buffers (Redis merges the same way).
    func mergeSmallNodes() {
        var i = 0
        while i + 1 < nodeCount {
            let a = node(i), b = node(i + 1)
            let small = ListValue.nodeLimit / 4
            if a.used + b.used <= ListValue.nodeLimit && (a.used < small || b.used < small) {
                if a.capacity - a.end < b.used {
                    if a.capacity - a.used >= b.used {
                        memmove(a.base, a.base + a.start, a.used)
                        let p = nodePointer(i)
                        p.pointee.start = 0
                        p.pointee.end = a.used
                    } else {
                        let used = a.used
                        memmove(a.base, a.base + a.start, used)
                        let p = nodePointer(i)
                        p.pointee.start = 0
                        p.pointee.end = used
                        reallocateNode(i, bytes: used + b.used)
                    }
                }
                let p = nodePointer(i)
                memcpy(p.pointee.base + p.pointee.end, b.base + b.start, b.used)
                p.pointee.end += b.used
                p.pointee.count += b.count
                removeNode(at: i + 1)
            } else {
                i += 1
            }
        }
    }

    /// LTRIM's first half: drops the first `n` elements.
    public func removeFirst(_ n: Int) {
        var n = min(n, count)
        while n > 0 && nodeCount > 0 {
            let first = node(0)
            if n >= first.count {
                n -= first.count
                elementCount -= first.count
                removeNode(at: 0)
                continue
            }
            var offset = first.start
            for _ in 0..<n {
                let (length, header) = ListValue.readHeader(first.base + offset)
                offset += length + 2 * header
            }
            let p = nodePointer(0)
            p.pointee.start = offset
            p.pointee.count -= n
            elementCount -= n
            n = 0
        }
    }

    /// LTRIM's second half: drops the last `n` elements.
    public func removeLast(_ n: Int) {
        var n = min(n, count)
        while n > 0 && nodeCount > 0 {
            let last = node(nodeCount - 1)
            if n >= last.count {
                n -= last.count
                elementCount -= last.count
                removeNode(at: nodeCount - 1)
                continue
            }
            var end = last.end
            for _ in 0..<n {
                let (length, header) = ListValue.readBacklen(last.base + end)
                end -= length + 2 * header
            }
            let p = nodePointer(nodeCount - 1)
            p.pointee.end = end
            p.pointee.count -= n
            elementCount -= n
            n = 0
        }
    }

    // MARK: - Copies

    /// A deep copy (COPY must not share a mutable list between two keys):
    /// every node packed into a buffer of exactly its live bytes.
    public func copy() -> ListValue {
        let other = ListValue()
        for i in 0..<nodeCount {
            let n = node(i)
            var fresh = other.allocateNode(bytes: max(n.used, 1))
            memcpy(fresh.base, n.base + n.start, n.used)
            fresh.end = n.used
            fresh.count = n.count
            other.insertNode(fresh, at: other.nodeCount)
        }
        other.elementCount = elementCount
        return other
    }

    /// A list holding `elements`, head first.
    public convenience init(_ elements: [[UInt8]]) {
        self.init()
        for e in elements { pushBack(e) }
    }

    /// Checks the structure (tests): node counts add up, every node is
    /// non-empty and within its buffer, and entries parse to its end.
    public func validate() -> Bool {
        var total = 0
        for i in 0..<nodeCount {
            let n = node(i)
            guard n.count > 0, n.start >= 0, n.start <= n.end, n.end <= n.capacity else { return false }
            var o = n.start, c = 0
            while o < n.end {
                let (length, header) = ListValue.readHeader(n.base + o)
                let (backLength, backHeader) = ListValue.readBacklen(n.base + o + length + 2 * header)
                guard backLength == length, backHeader == header else { return false }
                o += length + 2 * header
                c += 1
            }
            guard o == n.end, c == n.count else { return false }
            total += c
        }
        return total == count
    }
}
