import Benchmark
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import Glibc
import Synchronization

// Micro-benchmarks of the per-command hot paths: wall clock, throughput and malloc count
// (retain/release counting is left off: it crashes on this toolchain). The malloc counts have
// stored thresholds in Benchmarks/Thresholds/ (see docs/benchmarks.md), so an extra allocation
// per command shows up as a regression in `swift package benchmark thresholds check`.
//
// TODO(lists, sorted sets): "List push and pop" and "Sorted-set insert and range" join here once
// the list and zset types land in DamselflyStorage; docs/benchmarks.md tracks them.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .one,
        maxDuration: .seconds(1),
        maxIterations: 100_000,
        thresholds: [
            // Allocations are deterministic here: allow one stray malloc, no more.
            .mallocCountTotal: .init(absolute: [.p90: 1]),
        ]
    )

    respBenchmarks()
    keyspaceBenchmarks()
    runtimeBenchmarks()
}

// MARK: - RESP

/// 16 pipelined `SET key:<n> <32 bytes>` commands in one receive buffer.
func pipelinedSetBatch(_ count: Int) -> [UInt8] {
    var buffer: [UInt8] = []
    let value = [UInt8](repeating: UInt8(ascii: "x"), count: 32)
    for i in 0..<count {
        RESPEncodeCommand([Array("SET".utf8), Array("key:\(100_000 + i)".utf8), value], into: &buffer)
    }
    return buffer
}

func respBenchmarks() {
    Benchmark("RESP parse: pipelined batch of 16 SET") { benchmark in
        let batch = pipelinedSetBatch(16)
        let args = CommandArguments()
        var parser = RESPParser()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            batch.withUnsafeBytes { raw in
                var offset = 0
                var commands = 0
                while offset < raw.count {
                    switch parser.parse(UnsafeRawBufferPointer(rebasing: raw[offset...]), into: args) {
                    case .command(let consumed):
                        commands += args.count
                        offset += consumed
                    case .skip(let consumed):
                        offset += consumed
                    case .needMoreData, .protocolError:
                        fatalError("unexpected parse outcome")
                    }
                }
                blackHole(commands)
            }
        }
    }

    Benchmark("Reply encoding: 16 replies (8 +OK, 8 bulk 32 B)") { benchmark in
        var reply = ReplyBuilder(protocolVersion: 2)
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: 32)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            reply.removeAll(keepingCapacity: true)
            value.withUnsafeBytes { raw in
                for _ in 0..<8 {
                    reply.simpleString("OK")
                    reply.bulk(raw)
                }
            }
            blackHole(reply.buffer.count)
        }
    }

    Benchmark("Reply encoding: RESP3 map of 8 integers") { benchmark in
        var reply = ReplyBuilder(protocolVersion: 3)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            reply.removeAll(keepingCapacity: true)
            reply.mapHeader(8)
            for i in 0..<8 {
                reply.bulkInteger(i)
                reply.integer(1_000_000 + i)
            }
            blackHole(reply.buffer.count)
        }
    }
}

// MARK: - Keyspace

/// `count` keys `key:<n>` with their hashes.
func makeKeys(_ count: Int) -> [(key: [UInt8], hash: UInt64)] {
    (0..<count).map { i in
        let key = Array("key:\(i)".utf8)
        return (key, key.withUnsafeBytes { KeyHash.hash($0) })
    }
}

func keyspaceBenchmarks() {
    let batch = 1000
    let value = [UInt8](repeating: UInt8(ascii: "v"), count: 16)

    Benchmark("Keyspace insert: 1000 keys into an empty database", configuration: .init(scalingFactor: .one)) { benchmark in
        let keys = makeKeys(batch)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let db = Database()
            value.withUnsafeBytes { v in
                for k in keys {
                    k.key.withUnsafeBytes { _ = db.insert($0, hash: k.hash, value: .string(v), expireAtMs: nil, nowMs: 0) }
                }
            }
            blackHole(db.count)
        }
    }

    Benchmark("Keyspace lookup: 1000 hits in 100k keys") { benchmark in
        let keys = makeKeys(100_000)
        let db = Database()
        value.withUnsafeBytes { v in
            for k in keys {
                k.key.withUnsafeBytes { _ = db.insert($0, hash: k.hash, value: .string(v), expireAtMs: nil, nowMs: 0) }
            }
        }
        var rng = SystemRandomNumberGenerator()
        let probes = (0..<batch).map { _ in keys[Int.random(in: 0..<keys.count, using: &rng)] }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var found = 0
            for k in probes {
                if k.key.withUnsafeBytes({ db.find($0, hash: k.hash, nowMs: 0) }) != nil { found += 1 }
            }
            blackHole(found)
        }
    }

    Benchmark("Keyspace insert+delete: 1000 keys on a 100k-key database") { benchmark in
        let resident = makeKeys(100_000)
        let db = Database()
        value.withUnsafeBytes { v in
            for k in resident {
                k.key.withUnsafeBytes { _ = db.insert($0, hash: k.hash, value: .string(v), expireAtMs: nil, nowMs: 0) }
            }
        }
        let churn = (0..<batch).map { i in
            let key = Array("churn:\(i)".utf8)
            return (key: key, hash: key.withUnsafeBytes { KeyHash.hash($0) })
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            value.withUnsafeBytes { v in
                for k in churn {
                    k.key.withUnsafeBytes { _ = db.insert($0, hash: k.hash, value: .string(v), expireAtMs: nil, nowMs: 0) }
                }
            }
            var removed = 0
            for k in churn {
                if k.key.withUnsafeBytes({ db.remove($0, hash: k.hash, nowMs: 0) }) { removed += 1 }
            }
            blackHole(removed)
        }
    }
}

// MARK: - Runtime

/// Two event loops on their own threads bouncing a message `rounds` times through their
/// inboxes (`EventLoop.post`), the path every cross-shard hop takes.
final class PingPong: @unchecked Sendable {
    // Invariant: `remaining` is touched only by the loop that holds the ball (one at a time,
    // handed over through the loops' MPSC inboxes, which order the accesses).
    let a: EventLoop
    let b: EventLoop
    var remaining = 0
    let finished = Atomic<Bool>(false)

    init() {
        a = EventLoop(index: 0, preferIOUring: false)
        b = EventLoop(index: 1, preferIOUring: false)
        for loop in [a, b] {
            _ = LoopThread.spawn(name: "bench-loop\(loop.index)") { loop.run() }
            while !loop.isReady { sched_yield() }
        }
    }

    /// Runs `rounds` A→B→A round trips and waits for the last one.
    func run(rounds: Int) {
        finished.store(false, ordering: .relaxed)
        a.post { [self] in
            remaining = rounds
            serveFromA()
        }
        while !finished.load(ordering: .acquiring) { sched_yield() }
    }

    private func serveFromA() {
        if remaining == 0 {
            finished.store(true, ordering: .releasing)
            return
        }
        remaining -= 1
        b.post { [self] in a.post { [self] in serveFromA() } }
    }
}

func runtimeBenchmarks() {
    let rounds = 1000
    Benchmark(
        "Cross-thread round trip: 1000 EventLoop.post ping-pongs",
        configuration: .init(maxDuration: .seconds(2), thresholds: [
            // Two closure contexts per round trip; scheduling noise allows a little slack.
            .mallocCountTotal: .init(relative: [.p90: 5.0], absolute: [.p90: 100]),
        ])
    ) { benchmark in
        let pingPong = PingPong()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            pingPong.run(rounds: rounds)
        }
        benchmark.stopMeasurement()
        pingPong.a.stop()
        pingPong.b.stop()
    }
}
