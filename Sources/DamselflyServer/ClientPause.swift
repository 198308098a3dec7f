import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import Synchronization

/// CLIENT PAUSE / UNPAUSE as Redis 7.0: until a deadline, ALL holds back every command of
/// normal clients, WRITE only those that write or may replicate (see
/// ``holds(_:_:client:engine:)``); replica links are never paused.
///
/// The state is one atomic word, `deadline << 2 | mode`, 0 when not paused, so the check at
/// dispatch costs one relaxed load when nothing is paused. A held connection stops where
/// it is, its command still unparsed in its receive buffer, and joins its own loop's list
/// (``park(_:)``); it counts in INFO's `blocked_clients`, as Redis's postponed clients do.
/// When the pause ends it is resumed by its own loop: CLIENT UNPAUSE posts a wake to
/// every loop, and each loop's timer notices a deadline that has passed. Resumed
/// connections run in the order they were held and may be held again by a newer pause.
///
/// While paused, expiry and eviction delete nothing (``ExpiryHold``, shared with every
/// shard's databases).
final class ClientPause: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: `held[i]` is touched only on loop i; `state`
    // and `hold` are atomics; `update` serializes pause / unpause.
    enum Mode: Int64 { case off = 0, write = 1, all = 2 }

    private let state = Atomic<Int64>(0)
    private let update = Mutex<Void>(())
    let hold = ExpiryHold()
    private var held: [[Connection]]
    private let loops: [EventLoop]

    init(loops: [EventLoop]) {
        self.loops = loops
        held = Array(repeating: [], count: loops.count)
    }

    /// Whether a pause may be in force: the one load on the command path.
    @inline(__always)
    var mayBeActive: Bool { state.load(ordering: .relaxed) != 0 }

    /// The pause in force at `nowMs`; a pause whose deadline passed reads as off (and is
    /// cleared, so the command path is back to its one load).
    func mode(nowMs: Int64) -> Mode {
        let word = state.load(ordering: .relaxed)
        guard word != 0 else { return .off }
        if word >> 2 <= nowMs {
            _ = state.compareExchange(expected: word, desired: 0, ordering: .relaxed)
            return .off
        }
        return Mode(rawValue: word & 3) ?? .off
    }

    /// CLIENT PAUSE: a pause already in force keeps the later deadline and the stricter mode
    /// (Redis's pauseClients: a new pause extends, never shortens or relaxes).
    func pause(untilMs: Int64, mode: Mode, nowMs: Int64) {
        update.withLock { _ in
            var deadline = untilMs
            var strictest = mode
            let current = self.mode(nowMs: nowMs)
            if current != .off {
                let word = state.load(ordering: .relaxed)
                deadline = max(deadline, word >> 2)
                strictest = Mode(rawValue: max(current.rawValue, mode.rawValue))!
            }
            state.store(deadline << 2 | strictest.rawValue, ordering: .relaxed)
            hold.hold(untilMs: deadline)
        }
    }

    /// CLIENT UNPAUSE: ends the pause and wakes every loop's held connections.
    func unpause() {
        update.withLock { _ in
            state.store(0, ordering: .relaxed)
            hold.hold(untilMs: 0)
        }
        for loop in loops { loop.post { [self] in resumeHeld(on: loop) } }
    }

    /// Whether this command, from a normal client, waits for the pause to end: under ALL
    /// every one; under WRITE a write or `may_replicate` command, a script that may write
    /// (Redis's evalGetCommandFlags), an EXEC whose queue holds one. Commands queued in
    /// MULTI are judged when queued, as Redis judges them before queueing.
    func holds(_ spec: CommandSpec, _ args: CommandArguments, client: ClientState, engine: Engine) -> Bool {
        switch mode(nowMs: Clock.wallMillis()) {
        case .off: return false
        case .all: return true
        case .write:
            if spec.name == "exec" {
                return client.multiQueue?.contains { Self.mayWrite($0.spec, $0.arguments.count > 1 ? $0.arguments[1] : [], engine) } ?? false
            }
            return Self.mayWrite(spec, args.count > 1 ? args.bytes(1) : [], engine)
        }
    }

    private static func mayWrite(_ spec: CommandSpec, _ firstArgument: [UInt8], _ engine: Engine) -> Bool {
        switch spec.name {
        case "eval", "evalsha", "fcall": return ScriptFamily.mayWrite(spec.name, firstArgument: firstArgument, engine: engine)
        default: return spec.writesOrMayReplicate
        }
    }

    /// Holds `connection` (on its loop) until the pause ends.
    func park(_ connection: Connection) {
        held[connection.loop.index].append(connection)
        connection.counters.blockedClients.add(1, ordering: .relaxed)
    }

    /// Forgets a held connection that closed (on its loop).
    func forget(_ connection: Connection) {
        let index = connection.loop.index
        guard let at = held[index].firstIndex(where: { $0 === connection }) else { return }
        held[index].remove(at: at)
        connection.counters.blockedClients.add(-1, ordering: .relaxed)
    }

    /// The loop's timer: resumes its held connections once the deadline has passed.
    func resumeIfEnded(on loop: EventLoop) {
        guard !held[loop.index].isEmpty, mode(nowMs: Clock.wallMillis()) == .off else { return }
        resumeHeld(on: loop)
    }

    /// Resumes the loop's held connections in the order they were held.
    private func resumeHeld(on loop: EventLoop) {
        let waiting = held[loop.index]
        held[loop.index] = []
        for connection in waiting {
            connection.counters.blockedClients.add(-1, ordering: .relaxed)
            connection.resumeAfterPause()
        }
    }

    /// CLIENT PAUSE timeout [WRITE|ALL] (Redis's argument checks and texts).
    static func pauseCommand(_ call: CommandCall, pause: ClientPause) {
        var mode = Mode.all
        if call.args.count == 4 {
            if call.isArg(3, "write") {
                mode = .write
            } else if !call.isArg(3, "all") {
                return call.reply(.error("ERR CLIENT PAUSE mode must be WRITE or ALL"))
            }
        }
        guard let timeout = call.integer(2) else {
            return call.reply(.error("ERR timeout is not an integer or out of range"))
        }
        guard timeout >= 0 else { return call.reply(.error("ERR timeout is negative")) }
        let now = Clock.wallMillis()
        let deadline = timeout > (Int64.max >> 2) - now ? Int64.max >> 2 : now + timeout
        pause.pause(untilMs: deadline, mode: mode, nowMs: now)
        call.reply(.ok)
    }
}
