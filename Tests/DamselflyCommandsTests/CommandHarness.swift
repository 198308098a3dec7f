import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Glibc
import Synchronization
import Testing

/// Runs commands in process through the real command table, shard set and
/// transaction framework — N event loops on their own threads, one shard per
/// loop, no sockets — the way Dragonfly's `BaseFamilyTest::Run` does.
///
/// ``run(_:on:client:)`` posts the command to a loop, dispatches it there as
/// `Connection.dispatch` does (lookup, arity, handler) and blocks the calling
/// thread until the handler's reply arrives. Any thread may call it, so tests
/// can drive several loops at once.
final class CommandHarness: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: everything is immutable after
    // init except `threads`, which only `shutdown()` touches (guarded by
    // `stopped`); `clients[i]` is only read and mutated on loop i's thread
    // (by handlers), or by a test while no command is in flight.
    let loops: [EventLoop]
    let shardSet: ShardSet
    let registry: CommandRegistry
    let engine: Engine
    /// One default client per loop (id = loop index), database 0, RESP2.
    let clients: [ClientState]
    private var threads: [pthread_t] = []
    private let stopped = Atomic<Bool>(false)
    private let nextClientID = Atomic<Int>(1000)

    /// How long ``run(_:on:client:)`` waits for a reply before giving up.
    static let replyTimeoutNanos: UInt64 = 5_000_000_000

    init(loops loopCount: Int = 4, shards: Int = 4, databases: Int = 16, maxBulkLength: Int = 512 * 1024 * 1024) {
        loops = (0..<loopCount).map { EventLoop(index: $0, preferIOUring: false) }
        shardSet = ShardSet(loops: loops, shardCount: shards, databaseCount: databases, lockOnHashtags: false)
        registry = CommandRegistry(loopCount: loopCount)
        StringFamily.register(registry)
        GenericFamily.register(registry)
        engine = Engine(
            shardSet: shardSet, registry: registry, databaseCount: databases, maxMemory: 0,
            maxBulkLength: maxBulkLength, requirePass: "")
        clients = loops.map { ClientState(id: $0.index, loop: $0, authenticated: true) }
        for loop in loops {
            threads.append(LoopThread.spawn(name: "test-loop\(loop.index)") { loop.run() })
        }
        for loop in loops { while !loop.isReady { sched_yield() } }
    }

    deinit { shutdown() }

    /// Stops every loop and joins its thread. Idempotent.
    func shutdown() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for loop in loops { loop.stop() }
        for thread in threads { LoopThread.join(thread) }
    }

    /// A fresh client on `loop` (for SELECT-like database changes).
    func makeClient(on loop: Int = 0, database: Int = 0) -> ClientState {
        let client = ClientState(
            id: nextClientID.add(1, ordering: .relaxed).newValue, loop: loops[loop], authenticated: true)
        client.database = database
        return client
    }

    // MARK: - Running commands

    /// Runs one command on loop `loopIndex` (or on `client`'s loop) and
    /// returns its reply as RESP2 would deliver it.
    @discardableResult
    func run(_ args: [String], on loopIndex: Int = 0, client: ClientState? = nil,
             sourceLocation: SourceLocation = #_sourceLocation) -> RV {
        runBytes(args.map { Array($0.utf8) }, on: loopIndex, client: client, sourceLocation: sourceLocation)
    }

    /// ``run(_:on:client:)`` with binary arguments.
    @discardableResult
    func runBytes(_ args: [[UInt8]], on loopIndex: Int = 0, client: ClientState? = nil,
                  sourceLocation: SourceLocation = #_sourceLocation) -> RV {
        let sink = start(args, on: loopIndex, client: client)
        let deadline = Clock.monotonicNanos() + Self.replyTimeoutNanos
        while true {
            if let reply = sink.take() { return RV(reply) }
            if Clock.monotonicNanos() > deadline {
                Issue.record("no reply to \(args.map { String(decoding: $0, as: UTF8.self) }) within 5 s", sourceLocation: sourceLocation)
                return .error("TIMEOUT")
            }
            usleep(20)
        }
    }

    /// Sends one command to its loop without waiting: its reply lands in the
    /// returned collector (blocking commands, several clients at once).
    func start(_ args: [[UInt8]], on loopIndex: Int = 0, client: ClientState? = nil) -> ReplyCollector {
        let client = client ?? clients[loopIndex]
        let sink = ReplyCollector()
        let engine = self.engine
        client.loop.post {
            Self.dispatch(args, client: client, engine: engine, sink: sink)
        }
        return sink
    }

    /// What `Connection.dispatch` does, minus AUTH/OOM: lookup, arity, handler.
    /// Runs on the client's loop.
    static func dispatch(_ args: [[UInt8]], client: ClientState, engine: Engine, sink: ReplySink) {
        // The arguments are views into one buffer that lives until the
        // handler returns (handlers copy what they keep).
        let (arguments, buffer) = Self.arguments(args)
        defer { buffer.deallocate() }
        dispatch(arguments, client: client, engine: engine, sink: sink)
    }

    /// `args` as views into one buffer, which the caller deallocates: after
    /// the handler returns, or, for a sink with a hop batch, after its reply
    /// (``ReplySink/hopBatch``: such a sink keeps the bytes in place).
    static func arguments(_ args: [[UInt8]]) -> (CommandArguments, UnsafeMutableRawPointer) {
        let total = args.reduce(0) { $0 + $1.count }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1), alignment: 8)
        let arguments = CommandArguments()
        var offset = 0
        for arg in args {
            arg.withUnsafeBytes { src in
                if let base = src.baseAddress { (buffer + offset).copyMemory(from: base, byteCount: src.count) }
            }
            arguments.append(UnsafeRawBufferPointer(start: buffer + offset, count: arg.count))
            offset += arg.count
        }
        return (arguments, buffer)
    }

    /// ``dispatch(_:client:engine:sink:)`` for arguments already built.
    static func dispatch(_ arguments: CommandArguments, client: ClientState, engine: Engine, sink: ReplySink) {
        guard let spec = engine.registry.lookup(arguments[0]) else {
            return sink.complete(.error("ERR unknown command '\(arguments.string(0))'"))
        }
        guard spec.acceptsArgumentCount(arguments.count) else {
            return sink.complete(.error("ERR wrong number of arguments for '\(spec.name)' command"))
        }
        spec.handler(CommandCall(args: arguments, client: client, engine: engine, spec: spec, sink: sink))
    }

    // MARK: - Keys by shard

    /// The shard that owns `key` in this harness.
    func shard(of key: String) -> Int {
        let bytes = Array(key.utf8)
        return bytes.withUnsafeBytes { shardSet.shardIndex(of: $0, hash: KeyHash.hash($0)) }
    }

    /// The first key `prefix<n>` (n = 0, 1, ...) that lives on `shard`,
    /// skipping the ones in `excluding`.
    func key(onShard shard: Int, prefix: String = "key", excluding: Set<String> = []) -> String {
        var n = 0
        while true {
            let candidate = "\(prefix)\(n)"
            if self.shard(of: candidate) == shard && !excluding.contains(candidate) { return candidate }
            n += 1
        }
    }

    /// One key per shard, in shard order.
    func keysOnEveryShard(prefix: String = "key") -> [String] {
        (0..<shardSet.count).map { key(onShard: $0, prefix: prefix) }
    }
}

/// Records the one reply a handler sends; read by the waiting test thread.
final class ReplyCollector: ReplySink, Sendable {
    private let reply = Mutex<Reply?>(nil)
    private let calls = Atomic<Int>(0)

    func complete(_ reply: Reply) {
        let n = calls.add(1, ordering: .relaxed).newValue
        precondition(n == 1, "complete() called \(n) times")
        self.reply.withLock { $0 = reply }
    }

    func take() -> Reply? { reply.withLock { $0 } }
}

// MARK: - Comparable replies

/// A reply as a RESP2 client sees it: the ``Reply`` is encoded with
/// ``ReplyBuilder`` and decoded back, so `.bulkInteger(5)` and `.bulk("5")`
/// compare equal, as they do on the wire.
enum RV: Equatable, CustomStringConvertible {
    case simple(String)
    case error(String)
    case int(Int)
    case bulk([UInt8])
    case null
    case nullArray
    indirect case array([RV])

    static let ok = RV.simple("OK")

    static func bulk(_ s: String) -> RV { .bulk(Array(s.utf8)) }
    static func strings(_ items: [String?]) -> RV { .array(items.map { $0.map { RV.bulk($0) } ?? .null }) }

    init(_ reply: Reply) {
        var out = ReplyBuilder(protocolVersion: 2)
        reply.encode(into: &out)
        var decoder = RESPReplyDecoder()
        let decoded = try? out.buffer.withUnsafeBytes { raw in try decoder.decode(raw) }
        guard let decoded, decoded.consumed == out.buffer.count else {
            self = .error("UNDECODABLE \(out.buffer)")
            return
        }
        self = RV(decoded.0)
    }

    init(_ value: RESPValue) {
        switch value {
        case .simpleString(let s): self = .simple(s)
        case .error(let e): self = .error(e)
        case .integer(let i): self = .int(Int(i))
        case .bulk(let b): self = b.map { .bulk($0) } ?? .null
        case .array(let a): self = a.map { .array($0.map(RV.init)) } ?? .nullArray
        case .null: self = .null
        default: self = .error("UNEXPECTED RESP3 \(value)")
        }
    }

    /// The bulk payload as a string, if this is a bulk reply.
    var string: String? {
        if case .bulk(let b) = self { return String(decoding: b, as: UTF8.self) }
        return nil
    }

    var integer: Int? {
        if case .int(let i) = self { return i }
        return nil
    }

    var items: [RV]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var isError: Bool {
        if case .error = self { return true }
        return false
    }

    var description: String {
        switch self {
        case .simple(let s): return "+\(s)"
        case .error(let e): return "-\(e)"
        case .int(let i): return ":\(i)"
        case .bulk(let b): return "\"\(String(decoding: b, as: UTF8.self))\""
        case .null: return "(nil)"
        case .nullArray: return "(nil array)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

extension RV: ExpressibleByIntegerLiteral {
    init(integerLiteral value: Int) { self = .int(value) }
}

extension RV: ExpressibleByStringLiteral {
    /// A string literal is a bulk reply.
    init(stringLiteral value: String) { self = .bulk(value) }
}

/// The wrong-arity error text.
func arityError(_ name: String) -> RV { .error("ERR wrong number of arguments for '\(name)' command") }

/// Milliseconds since the epoch, as commands see it.
func nowMillis() -> Int64 { Clock.wallMillis() }

/// Sleeps the calling thread.
func sleepMillis(_ ms: Int) { usleep(UInt32(ms) * 1000) }
