import DamselflyRESP
import DamselflyRuntime
import DamselflyTransactions
import Glibc
import Synchronization
import Testing
@testable import DamselflyCommands

/// ``BlockingFamily``'s parked state: what a timed-out, cancelled or
/// disconnected waiter leaves behind (nothing), and what a shard may pop for
/// a connection that is gone (nothing; or it goes back).
@Suite struct BlockingFamilyTests {
    let h: CommandHarness

    init() {
        h = CommandHarness()
        ListFamily.register(h.registry)
        SortedSetFamily.register(h.registry)
        BlockingFamily.register(h.registry)
    }

    /// Runs `body` on loop `index`'s thread and returns its result.
    func onLoop(_ index: Int, _ body: @escaping () -> Int) -> Int {
        let result = Atomic<Int>(Int.min)
        h.loops[index].post { result.store(body(), ordering: .releasing) }
        let deadline = Clock.monotonicNanos() + 5_000_000_000
        while Clock.monotonicNanos() < deadline {
            let value = result.load(ordering: .acquiring)
            if value != Int.min { return value }
            usleep(50)
        }
        Issue.record("loop \(index) did not answer")
        return -1
    }

    /// Waiter registrations left on every shard (each read on its own loop).
    func registrations() -> Int {
        h.shardSet.shards.map { shard in onLoop(shard.loop.index) { shard.parkedRegistrationCount } }.reduce(0, +)
    }

    /// Polls until `condition` holds (up to 2 s).
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<2000 {
            if condition() { return true }
            usleep(1000)
        }
        return condition()
    }

    func waitForReply(_ sink: ReplyCollector) -> RV? {
        guard eventually({ sink.take() != nil }), let reply = sink.take() else { return nil }
        return RV(reply)
    }

    /// The waiter `client` is parked on (nil while it is not parked yet).
    func parkedWaiter(_ client: ClientState) -> Waiter? {
        let box = Mutex<Waiter?>(nil)
        _ = onLoop(client.loop.index) {
            let waiter = client.blockedOn?.waiter
            box.withLock { $0 = waiter }
            return 0
        }
        return box.withLock { $0 }
    }

    func parked(_ client: ClientState) -> Waiter? {
        var waiter: Waiter?
        _ = eventually {
            waiter = parkedWaiter(client)
            return waiter != nil
        }
        return waiter
    }

    /// Keys that hold elements are popped at once (one shard operation when the keys share a
    /// shard, the two-phase path otherwise), in key order; the first key of another type
    /// before any ready one answers WRONGTYPE; nothing is left parked.
    @Test func readyKeysPopAtOnceInKeyOrder() {
        let wrongType = RV.error("WRONGTYPE Operation against a key holding the wrong kind of value")
        h.run(["rpush", "q1", "a", "b"])
        #expect(h.run(["brpop", "q1", "0"]) == .array([.bulk("q1"), .bulk("b")]))
        #expect(h.run(["blpop", "q1", "0"]) == .array([.bulk("q1"), .bulk("a")]))
        #expect(h.run(["exists", "q1"]) == 0)
        h.run(["set", "str", "x"])
        #expect(h.run(["brpop", "str", "0"]) == wrongType)
        h.run(["rpush", "q2", "c", "d"])
        #expect(h.run(["brpop", "missing", "str", "q2", "0"]) == wrongType)
        #expect(h.run(["brpop", "missing", "q2", "str", "0"]) == .array([.bulk("q2"), .bulk("d")]))
        #expect(h.run(["blmpop", "0", "2", "missing", "q2", "left"]) == .array([.bulk("q2"), .array([.bulk("c")])]))
        #expect(registrations() == 0)
    }

    /// A ready pop whose keys are the connection's loop's own runs inline; a key of another
    /// shard among them (checked before anything is popped) sends the whole command the
    /// usual way, so the order of the keys still decides which one is popped.
    @Test func aPopOnTheLoopsOwnShardKeepsKeyOrderAcrossAnotherShardsKey() {
        let wrongType = RV.error("WRONGTYPE Operation against a key holding the wrong kind of value")
        let empty = h.key(onShard: 0, prefix: "empty"), own = h.key(onShard: 0, prefix: "own")
        let str = h.key(onShard: 0, prefix: "str"), other = h.key(onShard: 1, prefix: "other")
        h.run(["rpush", own, "a", "b", "c"])
        h.run(["rpush", other, "z"])
        h.run(["set", str, "x"])
        #expect(h.run(["brpop", empty, own, "0"], on: 0) == .array([.bulk(own), .bulk("c")]))
        // `other` comes before `own`: popped first, though `own` is loop 0's and ready.
        #expect(h.run(["blpop", empty, other, own, "0"], on: 0) == .array([.bulk(other), .bulk("z")]))
        #expect(h.run(["exists", other], on: 0) == 0)
        #expect(h.run(["blpop", empty, str, own, "0"], on: 0) == wrongType)
        #expect(h.run(["blpop", own, str, "0"], on: 0) == .array([.bulk(own), .bulk("a")]))
        #expect(h.run(["brpop", own, "0"], on: 0) == .array([.bulk(own), .bulk("b")]))
        #expect(h.run(["exists", own], on: 0) == 0)
        #expect(registrations() == 0)
    }

    @Test func timedOutWaitersLeaveNothingBehind() {
        let keys = h.keysOnEveryShard(prefix: "empty")
        let shapes: [[String]] = [
            ["blpop", keys[1], "100"],
            ["brpop", keys[0], keys[1], keys[2], keys[3], "100"],
            ["bzpopmin", keys[2], keys[3], "100"],
            ["blmove", keys[1], keys[2], "LEFT", "RIGHT", "100"],
            ["blmpop", "100", "2", keys[3], keys[0], "LEFT"],
        ]
        let client = h.makeClient(on: 0)
        weak var lastWaiter: Waiter?
        for shape in shapes {
            for _ in 0..<20 {
                let sink = h.start(shape.map { Array($0.utf8) }, client: client)
                guard let waiter = parked(client) else {
                    Issue.record("\(shape) did not park")
                    return
                }
                lastWaiter = waiter
                // The loop's timer, a deadline later.
                let registry = h.engine.blockedClients[0]
                _ = onLoop(0) {
                    registry.expire(nowNanos: Clock.monotonicNanos() + 200_000_000_000)
                    return 0
                }
                #expect(waitForReply(sink) == .nullArray)
            }
            // The shards drop their registrations by message: soon, all of them.
            #expect(eventually { registrations() == 0 }, "\(shape) left registrations")
            #expect(eventually { lastWaiter == nil }, "\(shape)'s waiter is still alive")
            #expect(onLoop(0) { h.engine.blockedClients[0].count } == 0)
        }
    }

    @Test func cancelledAndDisconnectedWaitersLeaveNothingBehind() {
        let keys = h.keysOnEveryShard(prefix: "gone")
        weak var lastWaiter: Waiter?
        for round in 0..<20 {
            let client = h.makeClient(on: round % 4)
            let sink = h.start([Array("brpop".utf8)] + keys.map { Array($0.utf8) } + [Array("0".utf8)], client: client)
            guard let waiter = parked(client) else {
                Issue.record("did not park")
                return
            }
            lastWaiter = waiter
            _ = onLoop(client.loop.index) {
                if round % 2 == 0 {
                    // CLIENT UNBLOCK
                    client.blockedOn?.cancel(reply: .nullArray)
                } else {
                    // What Connection does when the socket closes.
                    client.life.markClosed()
                    client.blockedOn?.cancel(reply: nil)
                }
                return 0
            }
            if round % 2 == 0 { #expect(waitForReply(sink) == .nullArray) }
        }
        #expect(eventually { registrations() == 0 })
        #expect(eventually { lastWaiter == nil })
    }

    /// A shard never pops for a connection its loop knows is gone, even
    /// before the loop got round to cancelling the waiter.
    @Test func aGoneConnectionIsNotServed() {
        let keys = h.keysOnEveryShard(prefix: "q")
        let client = h.makeClient(on: 0)
        _ = h.start([Array("brpop".utf8)] + keys[1...].map { Array($0.utf8) } + [Array("0".utf8)], client: client)
        #expect(parked(client) != nil)
        client.life.markClosed()
        #expect(h.run(["lpush", keys[2], "job"], on: 1) == 1)
        #expect(h.run(["lrange", keys[2], "0", "-1"], on: 1) == .strings(["job"]))
    }

    /// The loop learns of the close only after a shard popped for the
    /// waiter: what was popped goes back, at the same end.
    @Test(arguments: ["brpop", "blpop", "blmpop", "bzpopmin", "bzmpop", "blmove"])
    func whatAGoneConnectionWasServedGoesBack(_ command: String) {
        let keys = h.keysOnEveryShard(prefix: command)
        let client = h.makeClient(on: 0)
        let args: [String]
        switch command {
        case "blmpop": args = ["blmpop", "0", "2", keys[1], keys[2], "RIGHT", "COUNT", "2"]
        case "bzpopmin": args = ["bzpopmin", keys[1], keys[2], "0"]
        case "bzmpop": args = ["bzmpop", "0", "2", keys[1], keys[2], "MIN", "COUNT", "2"]
        case "blmove": args = ["blmove", keys[2], keys[3], "RIGHT", "LEFT", "0"]
        default: args = [command, keys[1], keys[2], "0"]
        }
        _ = h.start(args.map { Array($0.utf8) }, client: client)
        #expect(parked(client) != nil)
        // Hold loop 0 (the client's; it owns shard 0, which is not used) so
        // the served reply waits in its queue.
        let hold = Atomic<Bool>(true)
        h.loops[0].post { while hold.load(ordering: .acquiring) { usleep(100) } }
        if command.hasPrefix("bz") {
            #expect(h.run(["zadd", keys[2], "1", "a", "2", "b", "3", "c"], on: 1) == 3)
        } else {
            #expect(h.run(["rpush", keys[2], "a", "b", "c"], on: 1) == 3)
        }
        // Served by now (the waiter was claimed on shard 2's loop before it answered the push).
        client.life.markClosed()
        hold.store(false, ordering: .releasing)
        let everything: () -> RV = {
            command.hasPrefix("bz")
                ? h.run(["zrange", keys[2], "0", "-1", "WITHSCORES"], on: 1)
                : h.run(["lrange", keys[2], "0", "-1"], on: 1)
        }
        let expected: RV = command.hasPrefix("bz") ? .strings(["a", "1", "b", "2", "c", "3"]) : .strings(["a", "b", "c"])
        #expect(eventually { everything() == expected }, "\(command): \(everything())")
        if command == "blmove" { #expect(h.run(["llen", keys[3]], on: 1) == 0) }
        #expect(eventually { registrations() == 0 })
    }
}

extension BlockingFamilyTests {
    /// A pop that finds its key ready, for a connection that closed before the reply went
    /// out: what was popped goes back, at the same end, and nothing is left parked.
    @Test(arguments: ["brpop", "blpop", "blmpop", "bzpopmin"])
    func whatAReadyPopTookForAGoneConnectionGoesBack(_ command: String) {
        let client = h.makeClient(on: 0)
        let args: [String]
        switch command {
        case "blmpop": args = ["blmpop", "0", "1", "ready", "RIGHT", "COUNT", "2"]
        case "bzpopmin": args = ["bzpopmin", "ready", "0"]
        default: args = [command, "ready", "0"]
        }
        if command == "bzpopmin" {
            #expect(h.run(["zadd", "ready", "1", "a", "2", "b", "3", "c"]) == 3)
        } else {
            #expect(h.run(["rpush", "ready", "a", "b", "c"]) == 3)
        }
        client.life.markClosed()
        _ = h.start(args.map { Array($0.utf8) }, client: client)
        let everything: () -> RV = {
            command == "bzpopmin" ? h.run(["zrange", "ready", "0", "-1", "WITHSCORES"]) : h.run(["lrange", "ready", "0", "-1"])
        }
        let expected: RV = command == "bzpopmin" ? .strings(["a", "1", "b", "2", "c", "3"]) : .strings(["a", "b", "c"])
        // The pop and the give-back run on loop 0 in turn: once both ran, the list is whole.
        #expect(eventually { everything() == expected }, "\(command): \(everything())")
        #expect(registrations() == 0)
    }

    /// The `[key, element]` reply written in place is byte for byte what `ReplyBuilder`
    /// writes, at every length whose digit count changes.
    @Test func encodedPairIsTheBuildersArray() {
        for (a, b) in [(0, 0), (1, 9), (9, 10), (10, 99), (99, 100), (100, 1000), (3, 12345)] {
            let first = [UInt8](repeating: 0x61, count: a), second = [UInt8]((0..<b).map { UInt8(truncatingIfNeeded: $0) })
            var out = ReplyBuilder(protocolVersion: 2)
            out.arrayHeader(2)
            out.bulk(first)
            out.bulk(second)
            let encoded = first.withUnsafeBytes { f in second.withUnsafeBytes { BlockingFamily.encodePair(f, $0) } }
            #expect(encoded == out.buffer, "\(a), \(b)")
            #expect(encoded.capacity >= encoded.count)
        }
    }

    /// The timeout is read as Redis reads it: whole seconds and fractions, `+`, hex and
    /// exponents as `strtold` takes them; a pop that finds an element answers at once.
    @Test func timeoutForms() {
        for timeout in ["1", "0", "1.5", "+2", "0x10", "1e1", "007", "-0"] {
            h.run(["rpush", "t", "x"])
            #expect(h.run(["brpop", "t", timeout]) == .array([.bulk("t"), .bulk("x")]), "\(timeout)")
        }
        for timeout in ["x", "1x", " 1", "", "nan"] {
            #expect(h.run(["brpop", "t", timeout]) == .error("ERR timeout is not a float or out of range"), "\(timeout)")
        }
        for timeout in ["-1", "-0.5", "9223372036854775807", "1e300", "inf"] {
            #expect(h.run(["brpop", "t", timeout]) == .error("ERR timeout is negative"), "\(timeout)")
        }
    }
    /// BLMOVE's element goes back even when another push landed in front of
    /// it in the destination meanwhile, and is then in the source only.
    @Test func aMovedElementGoesBackOnceWhenTheDestinationMoved() {
        let keys = h.keysOnEveryShard(prefix: "mv")
        let client = h.makeClient(on: 0)
        _ = h.start(["blmove", keys[2], keys[3], "RIGHT", "LEFT", "0"].map { Array($0.utf8) }, client: client)
        #expect(parked(client) != nil)
        let hold = Atomic<Bool>(true)
        h.loops[0].post { while hold.load(ordering: .acquiring) { usleep(100) } }
        #expect(h.run(["rpush", keys[2], "a", "b", "c"], on: 1) == 3)
        #expect(eventually { h.run(["lrange", keys[3], "0", "-1"], on: 1) == .strings(["c"]) })
        #expect(h.run(["lpush", keys[3], "x"], on: 1) == 2)
        client.life.markClosed()
        hold.store(false, ordering: .releasing)
        #expect(eventually { h.run(["lrange", keys[2], "0", "-1"], on: 1) == .strings(["a", "b", "c"]) })
        #expect(h.run(["lrange", keys[3], "0", "-1"], on: 1) == .strings(["x"]))
    }
}
