import DamselflyRESP
import Synchronization

/// A bounded pool of persistent connections, opened lazily.
///
/// The worker's fetchers, poller and heartbeat and the jobs' own code all draw from the pool of
/// their capsule, so a job that runs a hundred commands concurrently waits for a free
/// connection instead of opening its own: the server sees at most ``limit`` connections for
/// the life of the process (the failure mode of opening a client per job). A connection that
/// broke is dropped and its slot reopened on demand.
///
/// A class behind one lock rather than an actor: every command leases and returns a
/// connection, and as an actor that was two executor hops per round trip, each a possible
/// thread switch; taking an idle connection is a few instructions under the lock, and only a
/// caller that must wait for one suspends.
public final class RedisPool: Sendable {
    public let config: RedisConfig
    public let limit: Int
    let reactor: IOReactor
    struct State {
        var idle: [RedisConnection] = []
        var open = 0
        /// Waiters get a connection, or `nil` meaning "a slot is yours: open one".
        var waiters: [CheckedContinuation<RedisConnection?, Never>] = []
        var connectionsOpened = 0
    }
    private let state = Mutex(State())

    public init(config: RedisConfig, limit: Int, reactor: IOReactor = .shared) {
        precondition(limit > 0)
        self.config = config
        self.limit = limit
        self.reactor = reactor
    }

    public var openConnections: Int { state.withLock { $0.open } }
    /// Connections opened over the pool's life (a test checks that it stays flat).
    public var connectionsOpened: Int { state.withLock { $0.connectionsOpened } }

    /// An idle connection, or `.slot` (open one), or `.wait` (none free: suspend).
    private enum Take { case connection(RedisConnection), slot, wait }

    private func take() async -> RedisConnection? {
        let now: Take = state.withLock { s in
            if let connection = s.idle.popLast() { return .connection(connection) }
            if s.open < limit {
                s.open += 1
                s.connectionsOpened += 1
                return .slot
            }
            return .wait
        }
        switch now {
        case .connection(let connection): return connection
        case .slot: return nil
        case .wait:
            return await withCheckedContinuation { (continuation: CheckedContinuation<RedisConnection?, Never>) in
                // Re-checked under the lock: a connection given back since is taken at once.
                let ready: Take = state.withLock { s in
                    if let connection = s.idle.popLast() { return .connection(connection) }
                    if s.open < limit {
                        s.open += 1
                        s.connectionsOpened += 1
                        return .slot
                    }
                    s.waiters.append(continuation)
                    return .wait
                }
                switch ready {
                case .connection(let connection): continuation.resume(returning: connection)
                case .slot: continuation.resume(returning: nil)
                case .wait: break
                }
            }
        }
    }

    private func giveBack(_ connection: RedisConnection?) {
        let handOff: (CheckedContinuation<RedisConnection?, Never>, RedisConnection?)? = state.withLock { s in
            if let connection, !connection.isBroken {
                if !s.waiters.isEmpty { return (s.waiters.removeFirst(), connection) }
                s.idle.append(connection)
                return nil
            }
            // A broken or never-opened connection frees its slot.
            if !s.waiters.isEmpty {
                s.connectionsOpened += 1
                return (s.waiters.removeFirst(), nil)
            }
            s.open -= 1
            return nil
        }
        if let (waiter, connection) = handOff { waiter.resume(returning: connection) }
    }

    /// Closes idle connections (leased ones close when given back after this).
    public func drain() {
        let closing = state.withLock { s -> [RedisConnection] in
            defer { s.idle.removeAll() }
            return s.idle
        }
        withExtendedLifetime(closing) {}
    }

    /// Leases a connection for `body`; it goes back to the pool afterwards.
    public func withConnection<T: Sendable>(
        _ body: (RedisConnection) async throws -> T
    ) async throws -> T {
        var connection = await take()
        if connection == nil {
            do {
                connection = try await RedisConnection.connect(config, reactor: reactor)
            } catch {
                giveBack(nil)
                throw error
            }
        }
        let leased = connection!
        do {
            let result = try await body(leased)
            giveBack(leased)
            return result
        } catch {
            giveBack(leased)
            throw error
        }
    }

    // MARK: - Conveniences

    /// One command; an error reply throws ``RedisError/server(_:)``.
    @discardableResult
    public func call(_ args: String...) async throws -> RESPValue {
        try await call(args)
    }

    @discardableResult
    public func call(_ args: [String]) async throws -> RESPValue {
        let reply = try await withConnection { try await $0.send(strings: [args])[0] }
        if case .error(let message) = reply { throw RedisError.server(message) }
        return reply
    }

    /// Commands in one round trip; replies (errors included) in order.
    public func pipeline(_ commands: [[String]]) async throws -> [RESPValue] {
        try await withConnection { try await $0.send(strings: commands) }
    }

    /// `MULTI`, the commands, `EXEC` in one round trip: the replies of the block, as Ruby's
    /// `conn.multi { }` returns them. Throws if the block was refused or aborted.
    public func transaction(_ commands: [[String]]) async throws -> [RESPValue] {
        let replies = try await pipeline([["MULTI"]] + commands + [["EXEC"]])
        switch replies.last {
        case .array(let items?)?: return items
        case .error(let message)?: throw RedisError.server(message)
        default:
            if let firstError = replies.first(where: { if case .error = $0 { return true } else { return false } }),
               case .error(let message) = firstError {
                throw RedisError.server(message)
            }
            throw RedisError.server("EXEC aborted")
        }
    }
}

// MARK: - Reading replies

extension RESPValue {
    /// A bulk or simple string as text; `nil` for nulls.
    public var text: String? {
        switch self {
        case .bulk(let b?): return String(decoding: b, as: UTF8.self)
        case .simpleString(let s): return s
        case .verbatim(_, let t): return t
        case .integer(let i): return String(i)
        case .double(let d): return String(d)
        default: return nil
        }
    }

    public var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulk(let b?): return Int64(String(decoding: b, as: UTF8.self))
        case .boolean(let b): return b ? 1 : 0
        default: return nil
        }
    }

    public var isNull: Bool {
        switch self {
        case .null, .bulk(nil), .array(nil): return true
        default: return false
        }
    }

    /// Elements of an array or set; a RESP3 map flattened to key, value, key, value as RESP2
    /// sends it, so callers read both protocols alike.
    public var elements: [RESPValue] {
        switch self {
        case .array(let a?): return a
        case .set(let s), .push(let s): return s
        case .map(let pairs): return pairs.flatMap { [$0.0, $0.1] }
        default: return []
        }
    }

    /// A map reply, or a RESP2 flat key/value array, as text pairs.
    public var pairs: [(String, String)] {
        let flat = elements
        var out: [(String, String)] = []
        var i = 0
        while i + 1 < flat.count {
            out.append((flat[i].text ?? "", flat[i + 1].text ?? ""))
            i += 2
        }
        return out
    }
}
