/// A node of ``ZTree``. Leaves hold elements in `entries`; internal nodes
/// hold their children, the element count of each child (`counts`) and
/// `children.count - 1` separators in `entries`.
///
/// Separator `i` is an upper bound of child `i` and lies strictly below
/// every element of child `i + 1`. Deleting an element may leave a
/// separator that is no longer an element: the bound still holds, so
/// routing stays right without touching the parents.
@usableFromInline
final class ZNode {
    @usableFromInline var entries: ContiguousArray<ZEntry> = []
    @usableFromInline var children: ContiguousArray<ZNode> = []
    @usableFromInline var counts: ContiguousArray<Int> = []
    @usableFromInline var total = 0
    @usableFromInline let isLeaf: Bool

    @inlinable init(leaf: Bool) { isLeaf = leaf }

    /// Fill measure for merging: elements of a leaf, children of a node.
    @inlinable var size: Int { isLeaf ? entries.count : children.count }
}

/// A counted B+tree of ``ZEntry`` in sorted-set order: the "skiplist"
/// encoding's ordered index (Redis uses a skip list with span widths; a
/// B+tree gives the same O(log n) rank/select/insert/delete with far fewer
/// allocations and pointer hops, and removes a rank range by dropping whole
/// subtrees).
@usableFromInline
struct ZTree {
    /// Most elements in a leaf and most children of an internal node.
    @usableFromInline static var capacity: Int { 64 }

    @usableFromInline var root = ZNode(leaf: true)

    @inlinable init() {}

    @inlinable var count: Int { root.total }

    /// First index of `array` where `before` stops holding.
    @inlinable
    static func partition<C: RandomAccessCollection>(_ array: C, _ before: (ZEntry) -> Bool) -> Int
    where C.Element == ZEntry, C.Index == Int {
        var lo = array.startIndex, hi = array.endIndex
        while lo < hi {
            let mid = (lo + hi) >> 1
            if before(array[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Child of `node` whose key range holds the key that `before` describes.
    @inlinable
    static func route(_ node: ZNode, _ before: (ZEntry) -> Bool) -> Int {
        partition(node.entries, before)
    }

    // MARK: - Queries

    @inlinable
    func countBefore(_ before: (ZEntry) -> Bool) -> Int {
        var node = root
        var acc = 0
        while !node.isLeaf {
            let i = ZTree.route(node, before)
            for j in 0..<i { acc += node.counts[j] }
            node = node.children[i]
        }
        return acc + ZTree.partition(node.entries, before)
    }

    /// The leaf holding `rank` and the offset in it.
    @inlinable
    func locate(_ rank: Int) -> (ZNode, Int) {
        var node = root
        var r = rank
        while !node.isLeaf {
            var i = 0
            while r >= node.counts[i] {
                r -= node.counts[i]
                i += 1
            }
            node = node.children[i]
        }
        return (node, r)
    }

    @inlinable
    func entry(at rank: Int) -> ZEntry {
        let (leaf, offset) = locate(rank)
        return leaf.entries[offset]
    }

    /// Visits `ranks` leaf by leaf (one descent per leaf).
    func forEach(ranks: Range<Int>, reverse: Bool, _ body: (ZEntry) -> Void) {
        if reverse {
            var rank = ranks.upperBound - 1
            while rank >= ranks.lowerBound {
                let (leaf, offset) = locate(rank)
                let stop = Swift.max(0, offset - (rank - ranks.lowerBound))
                var i = offset
                while i >= stop {
                    body(leaf.entries[i])
                    i -= 1
                }
                rank -= offset - stop + 1
            }
        } else {
            var rank = ranks.lowerBound
            while rank < ranks.upperBound {
                let (leaf, offset) = locate(rank)
                let stop = Swift.min(leaf.entries.count, offset + (ranks.upperBound - rank))
                for i in offset..<stop { body(leaf.entries[i]) }
                rank += stop - offset
            }
        }
    }

    // MARK: - Building

    /// Replaces the contents with `sorted` (in order), leaves 3/4 full.
    mutating func build(sorted: [ZEntry]) {
        let perLeaf = ZTree.capacity * 3 / 4
        var level: [ZNode] = []
        var start = 0
        while start < sorted.count {
            let leaf = ZNode(leaf: true)
            let end = Swift.min(sorted.count, start + perLeaf)
            leaf.entries = ContiguousArray(sorted[start..<end])
            leaf.total = end - start
            level.append(leaf)
            start = end
        }
        if level.isEmpty {
            root = ZNode(leaf: true)
            return
        }
        while level.count > 1 {
            var next: [ZNode] = []
            var i = 0
            while i < level.count {
                let node = ZNode(leaf: false)
                let end = Swift.min(level.count, i + perLeaf)
                for j in i..<end {
                    if j > i { node.entries.append(ZTree.maxEntry(level[j - 1])) }
                    node.children.append(level[j])
                    node.counts.append(level[j].total)
                    node.total += level[j].total
                }
                next.append(node)
                i = end
            }
            level = next
        }
        root = level[0]
    }

    /// The largest element under `node`.
    static func maxEntry(_ node: ZNode) -> ZEntry {
        var n = node
        while !n.isLeaf { n = n.children[n.children.count - 1] }
        return n.entries[n.entries.count - 1]
    }

    // MARK: - Insert

    mutating func insert(_ e: ZEntry) {
        if let (separator, right) = ZTree.insert(e, into: root) {
            let top = ZNode(leaf: false)
            top.children = [root, right]
            top.counts = [root.total, right.total]
            top.entries = [separator]
            top.total = root.total + right.total
            root = top
        }
    }

    /// Inserts under `node`; a split returns the separator and new right sibling.
    static func insert(_ e: ZEntry, into node: ZNode) -> (ZEntry, ZNode)? {
        node.total += 1
        if node.isLeaf {
            let at = partition(node.entries) { $0.isBefore(e.score, e.member) }
            node.entries.insert(e, at: at)
            guard node.entries.count > capacity else { return nil }
            let mid = node.entries.count / 2
            let right = ZNode(leaf: true)
            right.entries = ContiguousArray(node.entries[mid...])
            node.entries.removeSubrange(mid...)
            right.total = right.entries.count
            node.total = node.entries.count
            return (node.entries[mid - 1], right)
        }
        let i = route(node) { $0.isBefore(e.score, e.member) }
        node.counts[i] += 1
        guard let (separator, sibling) = insert(e, into: node.children[i]) else { return nil }
        node.counts[i] = node.children[i].total
        node.children.insert(sibling, at: i + 1)
        node.counts.insert(sibling.total, at: i + 1)
        node.entries.insert(separator, at: i)
        guard node.children.count > capacity else { return nil }
        let mid = node.children.count / 2
        let right = ZNode(leaf: false)
        right.children = ContiguousArray(node.children[mid...])
        right.counts = ContiguousArray(node.counts[mid...])
        right.entries = ContiguousArray(node.entries[mid...])
        let up = node.entries[mid - 1]
        node.children.removeSubrange(mid...)
        node.counts.removeSubrange(mid...)
        node.entries.removeSubrange((mid - 1)...)
        right.total = right.counts.reduce(0, +)
        node.total -= right.total
        return (up, right)
    }

    // MARK: - Remove

    /// Removes the element (`score`, `member`); the stored member, nil when absent.
    mutating func remove(_ score: Double, _ member: [UInt8]) -> [UInt8]? {
        let removed = ZTree.remove(score, member, from: root)
        if removed != nil { collapseRoot() }
        return removed
    }

    static func remove(_ score: Double, _ member: [UInt8], from node: ZNode) -> [UInt8]? {
        if node.isLeaf {
            let at = partition(node.entries) { $0.isBefore(score, member) }
            guard at < node.entries.count, node.entries[at].isSame(score, member) else { return nil }
            node.total -= 1
            return node.entries.remove(at: at).member
        }
        let i = route(node) { $0.isBefore(score, member) }
        guard let removed = remove(score, member, from: node.children[i]) else { return nil }
        node.counts[i] -= 1
        node.total -= 1
        if node.counts[i] == 0 {
            removeChild(node, i)
        } else if node.children[i].size < capacity / 4 {
            if i + 1 < node.children.count && node.children[i].size + node.children[i + 1].size <= capacity {
                merge(node, i)
            } else if i > 0 && node.children[i - 1].size + node.children[i].size <= capacity {
                merge(node, i - 1)
            }
        }
        return removed
    }

    /// Removes the elements with ranks in `ranks`, dropping covered subtrees whole.
    mutating func removeRange(_ ranks: Range<Int>) {
        if ranks.isEmpty { return }
        if ranks.count == root.total {
            root = ZNode(leaf: true)
            return
        }
        ZTree.removeRange(root, ranks.lowerBound, ranks.count)
        collapseRoot()
    }

    static func removeRange(_ node: ZNode, _ lo: Int, _ n: Int) {
        node.total -= n
        if node.isLeaf {
            node.entries.removeSubrange(lo..<(lo + n))
            return
        }
        var i = 0
        var start = lo
        while start >= node.counts[i] {
            start -= node.counts[i]
            i += 1
        }
        var remaining = n
        while remaining > 0 {
            let take = Swift.min(remaining, node.counts[i] - start)
            if !(start == 0 && take == node.counts[i]) { removeRange(node.children[i], start, take) }
            node.counts[i] -= take
            remaining -= take
            start = 0
            i += 1
        }
        var j = node.children.count - 1
        while j >= 0 {
            if node.counts[j] == 0 { removeChild(node, j) }
            j -= 1
        }
        j = 0
        while j + 1 < node.children.count {
            if node.children[j].size + node.children[j + 1].size <= capacity {
                merge(node, j)
            } else {
                j += 1
            }
        }
    }

    /// Drops child `i` and the separator that bounded it (or, for the last
    /// child, the one below it: the new last child is unbounded above).
    static func removeChild(_ node: ZNode, _ i: Int) {
        node.children.remove(at: i)
        node.counts.remove(at: i)
        if !node.entries.isEmpty { node.entries.remove(at: i < node.entries.count ? i : i - 1) }
    }

    /// Merges child `i + 1` into child `i`.
    static func merge(_ node: ZNode, _ i: Int) {
        let left = node.children[i], right = node.children[i + 1]
        if left.isLeaf {
            left.entries.append(contentsOf: right.entries)
        } else {
            left.entries.append(node.entries[i])
            left.entries.append(contentsOf: right.entries)
            left.children.append(contentsOf: right.children)
            left.counts.append(contentsOf: right.counts)
        }
        left.total += right.total
        node.counts[i] = left.total
        node.children.remove(at: i + 1)
        node.counts.remove(at: i + 1)
        node.entries.remove(at: i)
    }

    mutating func collapseRoot() {
        while !root.isLeaf && root.children.count <= 1 {
            root = root.children.first ?? ZNode(leaf: true)
        }
    }

    /// Test support: every count and total agrees with the subtree below.
    func checkCounts() -> Bool {
        func check(_ node: ZNode) -> Int? {
            if node.isLeaf { return node.entries.count == node.total ? node.total : nil }
            guard node.children.count == node.counts.count, node.entries.count == node.children.count - 1 else { return nil }
            var sum = 0
            for (i, child) in node.children.enumerated() {
                guard let n = check(child), n == node.counts[i], n > 0 else { return nil }
                sum += n
            }
            return sum == node.total ? sum : nil
        }
        return check(root) != nil
    }
}
