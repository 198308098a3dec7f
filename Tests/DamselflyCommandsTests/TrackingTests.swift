import DamselflyRuntime
import DamselflyTransactions
import Glibc
import Synchronization
import Testing
@testable import DamselflyCommands

/// CLIENT TRACKING's per-shard table alone, then through commands on four
/// shards: which reads are remembered, which writes invalidate whom, and the
/// table limit (the server's delivery replaced by a recorder).
@Suite(.serialized) struct TrackingTests {
    // MARK: - The table

    @Test func rememberCountsEachClientOncePerKey() {
        var table = TrackingTable()
        #expect(table.isEmpty)
        let first = table.remember(1, name: Array("k".utf8), client: 7)
        #expect(first.0 && first.1, "a new key and a new item")
        let again = table.remember(1, name: Array("k".utf8), client: 7)
        #expect(!again.0 && !again.1, "the same client twice counts once")
        let other = table.remember(1, name: Array("k".utf8), client: 8)
        #expect(!other.0 && other.1, "another client: a new item of the same key")
        #expect(table.keyCount == 1)
        let taken = table.take(1)
        #expect(taken?.name == Array("k".utf8))
        #expect(taken?.clients.sorted() == [7, 8])
        #expect(table.take(1) == nil, "a key is invalidated once until it is read again")
        #expect(table.isEmpty)
    }

    @Test func broadcastsGroupByPrefixAndKeepTheLastWriter() {
        var table = TrackingTable()
        table.addPrefix(Array("user:".utf8), client: 1)
        table.addPrefix(Array("".utf8), client: 2)
        table.noteBroadcast(Array("user:1".utf8), writer: 5)
        table.noteBroadcast(Array("user:1".utf8), writer: 6)
        table.noteBroadcast(Array("obj:1".utf8), writer: 5)
        var byClients: [[Int]: [[UInt8]: Int]] = [:]
        for case .broadcast(let keys, let clients) in table.takeBroadcasts() {
            byClients[clients] = Dictionary(uniqueKeysWithValues: keys.map { ($0.key, $0.writer) })
        }
        #expect(byClients[[1]] == [Array("user:1".utf8): 6])
        #expect(byClients[[2]] == [Array("user:1".utf8): 6, Array("obj:1".utf8): 5])
        #expect(table.takeBroadcasts().isEmpty)
        table.removePrefix(Array("user:".utf8), client: 1)
        table.noteBroadcast(Array("user:2".utf8), writer: 5)
        #expect(table.takeBroadcasts().count == 1, "only the empty prefix is left")
    }

    // MARK: - Through commands

    /// A harness whose tracking deliveries are recorded. The deliveries come from
    /// several shard threads at once (each shard's table-limit eviction), so they
    /// are guarded by a pthread mutex: ThreadSanitizer intercepts pthread and sees
    /// its ordering, where it reported two shards' appends under
    /// `Synchronization.Mutex` as a race (its futex path is outside the
    /// instrumented code).
    final class Recorder: @unchecked Sendable {
        // Invariant behind @unchecked Sendable: `list` is touched only under `mutex`.
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private var list: [TrackingDelivery] = []

        init() { pthread_mutex_init(mutex, nil) }
        deinit {
            pthread_mutex_destroy(mutex)
            mutex.deallocate()
        }

        func record(_ delivery: TrackingDelivery) {
            pthread_mutex_lock(mutex)
            list.append(delivery)
            pthread_mutex_unlock(mutex)
        }

        /// (key, clients, writer) of every `.key` delivery so far.
        var keys: [(String, [Int], Int)] {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return list.compactMap {
                if case .key(let name, let clients, let writer) = $0 { return (String(decoding: name, as: UTF8.self), clients, writer) }
                return nil
            }
        }
    }

    func tracked(_ h: CommandHarness) -> (Recorder, ClientState) {
        let recorder = Recorder()
        h.shardSet.tracking.deliver = { delivery in recorder.record(delivery) }
        h.shardSet.tracking.clients.add(1, ordering: .relaxed)
        let reader = h.makeClient(on: 1)
        reader.tracking = TrackingMode()
        return (recorder, reader)
    }

    /// Waits (bounded) until `condition` holds; deliveries are posted from shard threads.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 where !condition() { sleepMillis(2) }
        return condition()
    }

    @Test func writesInvalidateWhatTrackingReadersReadOnEveryShard() {
        let h = CommandHarness()
        defer { h.shutdown() }
        let (recorder, reader) = tracked(h)
        let writer = h.makeClient(on: 2)
        let keys = h.keysOnEveryShard(prefix: "t")
        for key in keys { h.run(["SET", key, "1"]) }
        h.run(["GET", keys[0]], client: reader)
        h.run(["MGET"] + keys[1...], client: reader)
        #expect(h.shardSet.tracking.totalKeys.load(ordering: .relaxed) == keys.count)
        #expect(recorder.keys.isEmpty, "reads invalidate nothing")
        h.run(["MSET"] + keys.flatMap { [$0, "2"] }, client: writer)
        #expect(eventually { recorder.keys.count == keys.count })
        #expect(Set(recorder.keys.map(\.0)) == Set(keys))
        #expect(recorder.keys.allSatisfy { $0.1 == [reader.id] && $0.2 == writer.id })
        #expect(h.shardSet.tracking.totalKeys.load(ordering: .relaxed) == 0)
        h.run(["SET", keys[0], "3"], client: writer)
        sleepMillis(20)
        #expect(recorder.keys.count == keys.count, "invalidated once until read again")
    }

    @Test func writesAndNonTrackingReadsAreNotRemembered() {
        let h = CommandHarness()
        defer { h.shutdown() }
        let (recorder, reader) = tracked(h)
        let bystander = h.makeClient(on: 3)
        h.run(["SET", "a", "1"], client: reader)      // a write by a tracking client
        h.run(["GET", "b"], client: bystander)        // a read by a client that does not track
        reader.tracking?.optin = true
        h.run(["GET", "c"], client: reader)           // OPTIN without CLIENT CACHING YES
        #expect(h.shardSet.tracking.totalKeys.load(ordering: .relaxed) == 0)
        reader.trackingCaching = true
        h.run(["GET", "c"], client: reader)
        #expect(h.shardSet.tracking.totalKeys.load(ordering: .relaxed) == 1)
        #expect(recorder.keys.isEmpty)
    }

    @Test func tableLimitDropsKeysDownToTheLimitAcrossShards() {
        let h = CommandHarness()
        defer { h.shutdown() }
        let (recorder, reader) = tracked(h)
        let keys = (0..<40).map { "lim\($0)" }
        h.run(["MGET"] + keys, client: reader)
        #expect(h.shardSet.tracking.totalKeys.load(ordering: .relaxed) == 40)
        h.shardSet.tracking.maxKeys.store(3, ordering: .relaxed)
        for shard in h.shardSet.shards { shard.postWhenAvailable { shard.trackingCron() } }
        #expect(eventually { recorder.keys.count == 37 })
        sleepMillis(20)
        #expect(recorder.keys.count == 37, "the shards together evict exactly the excess")
        #expect(h.shardSet.tracking.totalKeys.load(ordering: .relaxed) == 3)
        #expect(recorder.keys.allSatisfy { $0.2 == 0 }, "an eviction has no writer")
    }
}
