#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One element of a sorted set: its score and member bytes. Elements are
/// ordered by score, then by member bytes (memcmp, shorter first on a tie),
/// exactly as Redis orders them.
public struct ZEntry: Sendable {
    public var score: Double
    public var member: [UInt8]

    @inlinable
    public init(score: Double, member: [UInt8]) {
        self.score = score
        self.member = member
    }

    /// Redis's member order: `memcmp` over the common prefix, then length.
    @inlinable
    public static func compareMembers(_ a: [UInt8], _ b: [UInt8]) -> Int {
        a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in
                let n = Swift.min(x.count, y.count)
                if n > 0 {
                    let c = memcmp(x.baseAddress!, y.baseAddress!, n)
                    if c != 0 { return Int(c) }
                }
                return x.count - y.count
            }
        }
    }

    /// Whether `self` sorts before the element (`score`, `member`).
    @inlinable
    public func isBefore(_ score: Double, _ member: [UInt8]) -> Bool {
        self.score < score || (self.score == score && ZEntry.compareMembers(self.member, member) < 0)
    }

    @inlinable
    public func isSame(_ score: Double, _ member: [UInt8]) -> Bool {
        self.score == score && ZEntry.compareMembers(self.member, member) == 0
    }
}

/// A member as a dictionary key: hashed with one `combine(bytes:)` and
/// compared with `memcmp`, instead of `Array`'s element-by-element hashing.
@usableFromInline
struct ZMember: Hashable {
    @usableFromInline let bytes: [UInt8]

    @inlinable init(_ bytes: [UInt8]) { self.bytes = bytes }

    @inlinable
    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    @inlinable
    static func == (a: ZMember, b: ZMember) -> Bool {
        a.bytes.count == b.bytes.count && ZEntry.compareMembers(a.bytes, b.bytes) == 0
    }
}

/// A sorted set stored under one key. A reference type: the value lives in
/// one shard's keyspace and is mutated in place there; replies copy out what
/// they send.
///
/// Two encodings, as Redis 7.0:
/// - "listpack": one sorted array of ``ZEntry`` while there are at most
///   ``maxListpackEntries`` elements and every member is at most
///   ``maxListpackValue`` bytes (member lookups scan it, which at that size
///   is cheaper than hashing);
/// - "skiplist": a counted B+tree (``ZTree``, every internal node keeps the
///   size of each subtree, so rank, select, insert, delete and range removal
///   are O(log n)) plus a member → score dictionary for O(1) ZSCORE and for
///   finding an element's place in the tree. The name stays "skiplist"
///   because OBJECT ENCODING must say what Redis says.
///
/// Like Redis, a set converts to "skiplist" on the insertion that crosses a
/// limit and never converts back in place; stored results (ZUNIONSTORE,
/// ZRANGESTORE...) pick their encoding from their final size
/// (``init(sortedEntries:)``).
///
/// Every method that takes ranks uses ascending 0-based ranks.
public final class SortedSetValue {
    /// `zset-max-listpack-entries` (default 128), settable with CONFIG SET.
    public static var maxListpackEntries: Int { EncodingLimits.zsetMaxListpackEntries.load(ordering: .relaxed) }
    /// `zset-max-listpack-value` (default 64), settable with CONFIG SET.
    public static var maxListpackValue: Int { EncodingLimits.zsetMaxListpackValue.load(ordering: .relaxed) }

    /// The elements while the encoding is "listpack", in order.
    @usableFromInline var list: ContiguousArray<ZEntry> = []
    /// Non-nil once the encoding is "skiplist".
    @usableFromInline var tree: ZTree? = nil
    /// Member → score, only in the "skiplist" encoding.
    @usableFromInline var scores: [ZMember: Double] = [:]
    /// Heap bytes of all member arrays (shared by tree and dictionary).
    @usableFromInline var memberBytes = 0

    /// An empty "listpack" set.
    public init() {}

    /// An empty set in the encoding Redis picks when ZADD creates the key:
    /// "skiplist" straight away when the first member is too long.
    public init(firstMemberLength: Int) {
        // Redis 7.0's ZADD: straight to "skiplist" when listpacks are switched off (0 entries).
        if firstMemberLength > Self.maxListpackValue || Self.maxListpackEntries == 0 { tree = ZTree() }
    }

    /// A set holding `entries` (already in order, members distinct), encoded
    /// as Redis encodes a stored result: "listpack" when it fits the limits.
    public init(sortedEntries entries: [ZEntry]) {
        assert(Self.isStrictlyOrdered(entries), "SortedSetValue(sortedEntries:) given entries out of order")
        let fits = entries.count <= Self.maxListpackEntries
            && entries.allSatisfy { $0.member.count <= Self.maxListpackValue }
        for e in entries { memberBytes += ByteArray.heapBytes(e.member) }
        if fits {
            list = ContiguousArray(entries.map { ZEntry(score: Self.listpackScore($0.score), member: $0.member) })
        } else {
            var t = ZTree()
            t.build(sorted: entries)
            tree = t
            scores.reserveCapacity(entries.count)
            for e in entries { scores[ZMember(e.member)] = e.score }
        }
    }

    /// Number of elements.
    @inlinable
    public var count: Int { tree?.count ?? list.count }

    /// The name TYPE reports.
    public var typeName: String { "zset" }

    /// The name OBJECT ENCODING reports.
    public var encodingName: String { tree == nil ? "listpack" : "skiplist" }

    @inlinable
    public var isListpack: Bool { tree == nil }

    /// Approximate heap bytes, for MEMORY USAGE and used_memory: O(1).
    public var memoryUsage: Int {
        let entryBytes = MemoryLayout<ZEntry>.stride
        if let tree {
            // Leaves run ~3/4 full; the dictionary keeps a power-of-two
            // bucket array at most 3/4 full (key + value per bucket).
            let treeBytes = tree.count * entryBytes * 4 / 3 + (tree.count / 48 + 1) * 96
            let buckets = scores.capacity * 4 / 3
            let dictBytes = buckets * (MemoryLayout<ZMember>.stride + 8) + buckets / 8 + 64
            return 64 + treeBytes + dictBytes + memberBytes
        }
        return 64 + (list.capacity == 0 ? 0 : ByteArray.headerBytes + list.capacity * entryBytes) + memberBytes
    }

    /// A score as a listpack keeps it: Redis writes scores there as text
    /// and reads "-0" back as the integer 0, so -0 becomes 0 (the skip list
    /// keeps the double as it is).
    @inlinable
    static func listpackScore(_ score: Double) -> Double { score == 0 ? 0 : score }

    // MARK: - Lookups

    /// Position of `member` in the listpack array.
    @inlinable
    func listIndex(of member: [UInt8]) -> Int? {
        member.withUnsafeBytes { m in
            list.firstIndex { e in
                e.member.count == m.count
                    && e.member.withUnsafeBytes { m.count == 0 || memcmp($0.baseAddress!, m.baseAddress!, m.count) == 0 }
            }
        }
    }

    /// The score of `member`, nil when absent.
    @inlinable
    public func score(of member: [UInt8]) -> Double? {
        if tree != nil { return scores[ZMember(member)] }
        return listIndex(of: member).map { list[$0].score }
    }

    /// The ascending rank of `member`, with its score; nil when absent.
    public func rank(of member: [UInt8]) -> (rank: Int, score: Double)? {
        if let tree {
            guard let score = scores[ZMember(member)] else { return nil }
            return (tree.countBefore { $0.isBefore(score, member) }, score)
        }
        return listIndex(of: member).map { ($0, list[$0].score) }
    }

    /// The element at ascending `rank` (0 ≤ rank < count).
    @inlinable
    public func entry(at rank: Int) -> ZEntry {
        if let tree { return tree.entry(at: rank) }
        return list[rank]
    }

    /// How many elements satisfy `before`, a predicate that holds for a
    /// prefix of the order (true, then false): the rank where it stops.
    /// It is also asked about separator keys, so it must be monotone over
    /// all (score, member) pairs, not only over the elements.
    @inlinable
    public func countBefore(_ before: (ZEntry) -> Bool) -> Int {
        if let tree { return tree.countBefore(before) }
        return ZTree.partition(list, before)
    }

    /// Calls `body` for the elements with ranks in `ranks`, ascending, or
    /// from the top of the range down when `reverse`.
    public func forEach(ranks: Range<Int>, reverse: Bool = false, _ body: (ZEntry) -> Void) {
        if ranks.isEmpty { return }
        if let tree {
            tree.forEach(ranks: ranks, reverse: reverse, body)
        } else if reverse {
            for i in ranks.reversed() { body(list[i]) }
        } else {
            for i in ranks { body(list[i]) }
        }
    }

    /// The elements with ranks in `ranks` (see ``forEach(ranks:reverse:_:)``).
    public func entries(ranks: Range<Int>, reverse: Bool = false) -> [ZEntry] {
        var out: [ZEntry] = []
        out.reserveCapacity(ranks.count)
        forEach(ranks: ranks, reverse: reverse) { out.append($0) }
        return out
    }

    /// Every element in order.
    public var allEntries: [ZEntry] { entries(ranks: 0..<count) }

    // MARK: - Changes

    /// Adds `member`, which must be absent, converting to "skiplist" first
    /// when the set would cross a listpack limit (Redis's `zsetAdd`).
    public func insert(_ member: [UInt8], score: Double) {
        memberBytes += ByteArray.heapBytes(member)
        if tree == nil
            && (list.count + 1 > Self.maxListpackEntries || member.count > Self.maxListpackValue)
        {
            convertToSkiplist()
        }
        if tree != nil {
            scores[ZMember(member)] = score
            tree!.insert(ZEntry(score: score, member: member))
        } else {
            let score = Self.listpackScore(score)
            let e = ZEntry(score: score, member: member)
            let at = ZTree.partition(list) { $0.isBefore(score, member) }
            list.insert(e, at: at)
        }
    }

    /// Changes the score of `member` (present, with score `old`) to `new`.
    public func update(_ member: [UInt8], from old: Double, to new: Double) {
        if old == new { return }
        if tree != nil {
            let stored = tree!.remove(old, member)
            scores[ZMember(member)] = new
            tree!.insert(ZEntry(score: new, member: stored ?? member))
        } else {
            guard let at = listIndex(of: member) else { return }
            let new = Self.listpackScore(new)
            let stored = list.remove(at: at).member
            let to = ZTree.partition(list) { $0.isBefore(new, stored) }
            list.insert(ZEntry(score: new, member: stored), at: to)
        }
    }

    /// Removes `member`; its score, nil when it was absent.
    @discardableResult
    public func remove(_ member: [UInt8]) -> Double? {
        if tree != nil {
            guard let score = scores.removeValue(forKey: ZMember(member)) else { return nil }
            if let stored = tree!.remove(score, member) { memberBytes -= ByteArray.heapBytes(stored) }
            return score
        }
        guard let at = listIndex(of: member) else { return nil }
        let removed = list.remove(at: at)
        memberBytes -= ByteArray.heapBytes(removed.member)
        return removed.score
    }

    /// Removes the elements with ranks in `ranks` (ZREMRANGEBY*, pops).
    public func removeRanks(_ ranks: Range<Int>) {
        if ranks.isEmpty { return }
        if tree != nil {
            tree!.forEach(ranks: ranks, reverse: false) { e in
                scores.removeValue(forKey: ZMember(e.member))
                memberBytes -= ByteArray.heapBytes(e.member)
            }
            tree!.removeRange(ranks)
        } else {
            for i in ranks { memberBytes -= ByteArray.heapBytes(list[i].member) }
            list.removeSubrange(ranks)
        }
    }

    /// Switches to the "skiplist" encoding (no-op when already there).
    public func convertToSkiplist() {
        guard tree == nil else { return }
        var t = ZTree()
        t.build(sorted: Array(list))
        scores.reserveCapacity(Swift.max(list.count, 16))
        for e in list { scores[ZMember(e.member)] = e.score }
        list = []
        tree = t
    }

    /// Whether `entries` are in (score, member) order with no two alike: what
    /// every constructor from a prepared array relies on (debug checks).
    public static func isStrictlyOrdered(_ entries: [ZEntry]) -> Bool {
        for i in 1..<Swift.max(entries.count, 1) where !entries[i - 1].isBefore(entries[i].score, entries[i].member) {
            return false
        }
        return true
    }

    /// Structural self-check for tests: order, counts, dictionary agreement.
    public func checkInvariants() -> Bool {
        let all = allEntries
        guard Self.isStrictlyOrdered(all) else { return false }
        if let tree {
            guard tree.checkCounts(), scores.count == all.count else { return false }
            for e in all where scores[ZMember(e.member)] != e.score { return false }
            for (i, e) in all.enumerated() where i % 7 == 0 {
                guard rank(of: e.member)?.rank == i else { return false }
            }
        }
        return true
    }
}
