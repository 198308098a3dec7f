import DamselflyRuntime
import Glibc
import DamselflyStorage
import Synchronization

/// `--shard_round_robin_prefix`: keys whose name (or `{tag}`) starts with the
/// prefix are placed on shards in turn, the first time each name is seen,
/// instead of by hash.
///
/// Job queues are few and hot: hashing a dozen queue names onto 8 shards
/// piles several on one shard while others idle; dealing them out in turn
/// spreads them evenly. A key `{queue:default}:inprogress:host` follows its
/// tag, so a queue and its private lists share a shard.
///
/// The table is shared by all threads and only grows. Lookups go through a
/// per-loop cache (touched by its own thread only); a miss takes the mutex,
/// which happens once per name per thread.
public final class RoundRobinPlacement: @unchecked Sendable {
    // Invariant: `caches[i]` is touched only on loop i (checked through
    // `EventLoop.current`); `table` only under its mutex.
    public let prefix: [UInt8]
    private let shardCount: Int
    private let table = Mutex<(assignments: [[UInt8]: Int], next: Int)>(([:], 0))
    private let caches: [LoopCache]

    /// One loop's view of the table, plus the name it looked up last: a
    /// command resolves its key's shard several times (routing, blocking
    /// registration, migration), and a worker drains one queue, so the last
    /// name answers most lookups with one memcmp instead of an array copy
    /// and a hash.
    final class LoopCache {
        var names: [[UInt8]: Int] = [:]
        var lastName: [UInt8] = []
        var lastShard = -1
    }

    public init(prefix: [UInt8], shardCount: Int, loopCount: Int) {
        self.prefix = prefix
        self.shardCount = shardCount
        self.caches = (0..<loopCount).map { _ in LoopCache() }
    }

    /// The name that decides placement when it has the prefix: the `{tag}`
    /// if there is one, else the key.
    @inline(__always)
    func placementName(_ key: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        let name = KeyHash.hashtag(of: key) ?? key
        guard name.count >= prefix.count else { return nil }
        for i in 0..<prefix.count where name[i] != prefix[i] { return nil }
        return name
    }

    /// The shard of `key` when it is placed round robin, nil otherwise.
    public func shard(of key: UnsafeRawBufferPointer) -> Int? {
        guard let name = placementName(key) else { return nil }
        if let loop = EventLoop.current, loop.index < caches.count {
            let cache = caches[loop.index]
            if cache.lastShard >= 0, name.count > 0, cache.lastName.count == name.count,
               cache.lastName.withUnsafeBytes({ memcmp($0.baseAddress!, name.baseAddress!, name.count) == 0 }) {
                return cache.lastShard
            }
            let bytes = Array(name)
            let shard: Int
            if let cached = cache.names[bytes] {
                shard = cached
            } else {
                shard = assign(bytes)
                cache.names[bytes] = shard
            }
            cache.lastName = bytes
            cache.lastShard = shard
            return shard
        }
        return assign(Array(name))
    }

    private func assign(_ name: [UInt8]) -> Int {
        let count = shardCount
        return table.withLock { state in
            if let existing = state.assignments[name] { return existing }
            let shard = state.next % count
            state.next += 1
            state.assignments[name] = shard
            return shard
        }
    }

    /// The table (name → shard), for snapshots.
    public var assignments: [([UInt8], Int)] {
        table.withLock { state in state.assignments.map { ($0.key, $0.value) } }
    }

    /// Restores a saved table (at start-up, before any command runs).
    public func restore(_ saved: [([UInt8], Int)]) {
        table.withLock { state in
            for (name, shard) in saved where shard < shardCount { state.assignments[name] = shard }
            state.next = state.assignments.count
        }
    }
}
