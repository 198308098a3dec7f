import DamselflyTransactions

/// The shard work of a squashed EXEC's commands (`--multi_exec_squash`),
/// collected on the connection's loop while their handlers run, then run on
/// each shard as one operation under the EXEC transaction's locks.
///
/// Without it, EXEC waits for one hop per command, one after another: a
/// Sidekiq push (`MULTI; SADD queues …; LPUSH queue:… …; EXEC`) over two
/// threads cost three round trips between the threads, and the
/// transaction's machinery around them cost a single thread four times
/// Redis's instructions. With it, each shard's pieces run back to back in
/// the order their commands were queued, and the shards run at once.
///
/// Only for commands whose every piece of work is handed over while their
/// handler runs (``CommandCall/execHop(_:_:done:)``), as the work of a command
/// whose keys are all on one shard is: the EXEC decides which commands
/// qualify before it starts. A piece handed over later (``noteLateHop()``)
/// would still run, as a plain hop; debug builds stop there.
///
/// Invariant behind `@unchecked Sendable`: `pieces` is appended to on the
/// connection's loop while `collecting`, and only read after that, on each
/// shard's loop (each reads the pieces of its own shard), the hand-over being
/// the post of the shard's step (a release and an acquire). The completions
/// a shard returns run back on the connection's loop.
public final class ExecBatch: @unchecked Sendable {
    /// One piece of work: run on `shard`, it returns what delivers its result
    /// to its command, to be called back on the connection's loop.
    public struct Piece {
        public let shard: Int
        public let run: (Shard) -> () -> Void
    }

    /// Every piece, in the order the commands handed them over.
    public private(set) var pieces: [Piece] = []
    /// Open while the EXEC's handlers run: pieces go into the batch.
    public var collecting = false

    /// `commands`: how many pieces to make room for (one per command, most often).
    public init(commands: Int) {
        pieces.reserveCapacity(commands)
    }

    func add<R>(_ shardIndex: Int, _ work: @escaping (Shard) -> R, done: @escaping (R) -> Void) {
        pieces.append(Piece(shard: shardIndex) { shard in
            let result = work(shard)
            return { done(result) }
        })
    }

    func noteLateHop() {
        assertionFailure("a squashed EXEC's command handed shard work over after its handler returned")
    }

    /// Runs `shard`'s pieces in order (on its loop); returns their deliveries.
    public func run(on shard: Shard) -> [() -> Void] {
        var deliveries: [() -> Void] = []
        deliveries.reserveCapacity(pieces.count)
        for piece in pieces where piece.shard == shard.index {
            deliveries.append(piece.run(shard))
        }
        return deliveries
    }
}
