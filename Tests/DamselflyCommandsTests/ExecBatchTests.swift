import DamselflyRESP
import DamselflyRuntime
@testable import DamselflyTransactions
import Glibc
import Synchronization
import Testing
@testable import DamselflyCommands

/// ``ExecBatch``: what a squashed EXEC's commands hand over while their
/// handlers run (``CommandCall/execHop(_:_:done:)``), and how a shard runs its
/// share. The EXEC itself (MultiFamily's `SquashedExec`) is tested end to end
/// in tests/e2e/test_multi_exec_squash.py.
@Suite(.serialized) struct ExecBatchTests {
    /// A command's reply slot that leaves its shard work in `batch`.
    final class Slot: ReplySink, @unchecked Sendable {
        // Invariant: used on loop 0's thread only, read after `done` is set.
        let batch: ExecBatch
        var reply: Reply?
        init(_ batch: ExecBatch) { self.batch = batch }
        var execBatch: ExecBatch? { batch }
        func complete(_ reply: Reply) { self.reply = reply }
    }

    /// Runs `commands`' handlers inside EXEC on loop 0 (call it there), as a
    /// squashed EXEC does: each answers to a slot and leaves its shard work in
    /// the batch. The arguments' buffers are the caller's to free.
    static func collect(_ h: CommandHarness, _ commands: [[String]]) -> (ExecBatch, [Slot], [UnsafeMutableRawPointer]) {
        let batch = ExecBatch(commands: commands.count)
        batch.collecting = true
        var slots: [Slot] = []
        var buffers: [UnsafeMutableRawPointer] = []
        for command in commands {
            let slot = Slot(batch)
            slots.append(slot)
            let (arguments, buffer) = CommandHarness.arguments(command.map { Array($0.utf8) })
            buffers.append(buffer)
            guard let spec = h.engine.registry.lookup(arguments[0]), spec.acceptsArgumentCount(arguments.count) else {
                slot.complete(.error("ERR wrong number of arguments"))
                continue
            }
            spec.handler(CommandCall(args: arguments, client: h.clients[0], engine: h.engine, spec: spec,
                                     sink: slot, insideExec: true))
        }
        batch.collecting = false
        return (batch, slots, buffers)
    }

    /// Commands' handlers inside EXEC leave one piece each for their shard and
    /// answer nothing yet; each shard runs its own pieces, in the order they
    /// were handed over, and the deliveries answer the commands.
    @Test func handlersLeaveTheirWorkAndShardsRunTheirShare() {
        let h = CommandHarness(loops: 1, shards: 1)
        let shard = h.shardSet.shards[0]
        let done = Atomic<Bool>(false)
        let seen = Shared<[String]>([])
        h.loops[0].post {
            let (batch, slots, buffers) = Self.collect(h, [["set", "k", "1"], ["incr", "k"], ["get", "k"], ["get"]])
            // Nothing ran yet: three pieces wait, the arity error answered at once.
            seen.withLock { $0.append("pieces \(batch.pieces.count) replies \(slots.filter { $0.reply != nil }.count)") }
            for deliver in batch.run(on: shard) { deliver() }
            for slot in slots { seen.withLock { $0.append("\(slot.reply.map { "\(RV($0))" } ?? "none")") } }
            for buffer in buffers { buffer.deallocate() }
            done.store(true, ordering: .releasing)
        }
        #expect(TransactionTests.waitUntil { done.load(ordering: .acquiring) })
        #expect(seen.withLock { $0 } == [
            "pieces 3 replies 1", "\(RV.ok)", "\(RV.int(2))", "\(RV.bulk("2"))", "\(RV.error("ERR wrong number of arguments"))",
        ])
        #expect(h.run(["get", "k"]) == .bulk("2"))
    }

    /// A shard runs only its own pieces; a two-step command with its keys on
    /// one shard (RENAME) hands its work over as one piece.
    @Test func eachShardRunsOnlyItsOwnPieces() {
        let h = CommandHarness(loops: 2, shards: 2)
        let (a, b) = (h.key(onShard: 0, prefix: "a"), h.key(onShard: 1, prefix: "b"))
        let a2 = h.key(onShard: 0, prefix: "a2-")
        h.run(["set", a, "x"])
        let done = Atomic<Bool>(false)
        let seen = Shared<[String]>([])
        h.loops[0].post {
            let (batch, slots, buffers) = Self.collect(h, [["set", b, "y"], ["rename", a, a2], ["get", b]])
            seen.withLock { $0.append("shards \(batch.pieces.map(\.shard))") }
            // Shard 0's share here, shard 1's on its own loop.
            for deliver in batch.run(on: h.shardSet.shards[0]) { deliver() }
            h.loops[1].post {
                let deliveries = batch.run(on: h.shardSet.shards[1])
                h.loops[0].post {
                    for deliver in deliveries { deliver() }
                    for slot in slots { seen.withLock { $0.append("\(slot.reply.map { "\(RV($0))" } ?? "none")") } }
                    for buffer in buffers { buffer.deallocate() }
                    done.store(true, ordering: .releasing)
                }
            }
        }
        #expect(TransactionTests.waitUntil { done.load(ordering: .acquiring) })
        #expect(seen.withLock { $0 } == ["shards [1, 0, 1]", "\(RV.ok)", "\(RV.ok)", "\(RV.bulk("y"))"])
        #expect(h.run(["mget", a, a2, b]) == .array([.null, .bulk("x"), .bulk("y")]))
    }
}
