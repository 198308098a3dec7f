import DamselflyACL
import CLuaBridge
import Glibc
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Synchronization

/// How a running script reaches the keyspace.
public final class ScriptExecution {
    public enum Mode {
        /// Every declared key lives on this shard; the script runs on its thread.
        case onShard(Shard)
        /// A global transaction lent every shard to the script's thread.
        case lentShards
    }

    public let mode: Mode
    /// The script touched a key on a shard out of its reach.
    public var touchedForeignKey = false
    /// The script has written something (a rerun is no longer possible).
    public var wrote = false
    /// Shards the script used while it had every shard lent.
    public var touchedShards: Set<Int> = []
    /// The client that ran EVAL / FCALL and its declared keys: a read-only
    /// command the script calls makes a tracking caller cache those keys
    /// (Redis remembers the script command's keys, not the called one's).
    public var caller: ClientState?
    public var declaredKeys: [KeyRef] = []

    init(mode: Mode) { self.mode = mode }

    @usableFromInline static let foreignKeyError = Reply.error(
        "ERR Script attempted to access a key that was not declared and lives on another shard")
}

/// Which script command family a running script came from: its BUSY text and
/// which KILL command may stop it differ.
public enum ScriptKind: Sendable {
    /// EVAL / EVALSHA (stopped by SCRIPT KILL).
    case eval
    /// FCALL (stopped by FUNCTION KILL).
    case function
}

/// Settings every script run consults; changed by CONFIG SET from any thread.
public final class ScriptSettings: Sendable {
    /// `lua-time-limit` / `busy-reply-threshold` (`--lua_time_limit`), in ms:
    /// past it a running script makes every other client get BUSY.
    public let timeLimitMillis = Atomic<Int>(5000)
    /// `--default_lua_flags`: the Dragonfly script flags of scripts without
    /// a `--!df flags=` line.
    let defaultFlags = Mutex<Set<String>>([])
    /// Whether `defaultFlags` holds allow-undeclared-keys: read by every
    /// EVAL without a flags line, so without taking the mutex.
    let defaultAllowsUndeclaredKeys = Atomic<Bool>(false)
    /// DEBUG SET-DISABLE-DENY-SCRIPTS: scripts may call what they normally may not
    /// (`noscript` and keyless commands), as Redis's suite uses it to call DEBUG PROTOCOL.
    public let denyDisabled = Atomic<Bool>(false)
}

/// What one loop thread's interpreter is running, readable from every thread:
/// the process-wide record behind BUSY and SCRIPT KILL.
///
/// A script runs to completion on one loop thread; clients on other threads
/// are still read and answered. Redis answers every other client BUSY once
/// the script has run past lua-time-limit, and so does Damselfly: the Lua
/// count hook (see bridge.c) notes `timedOut` here and from then on serves
/// the script's own thread's sockets too (``checkInterrupt()``), every
/// connection reads it before dispatching, and SCRIPT KILL sets
/// `killTarget`, which the hook turns into the script's error.
public final class RunningScript: Sendable {
    let settings: ScriptSettings
    let loopIndex: Int
    /// Clock.monotonicNanos() when the running script began; 0 when none runs.
    let startedNanos = Atomic<UInt64>(0)
    /// The script has run past the time limit: other threads answer BUSY.
    let timedOut = Atomic<Bool>(false)
    /// The script has called a write command: SCRIPT KILL refuses (UNKILLABLE).
    let wrote = Atomic<Bool>(false)
    let isFunction = Atomic<Bool>(false)
    /// The start time of the run a KILL stopped: naming the run (rather than
    /// a flag) keeps a late kill from stopping the thread's next script.
    let killTarget = Atomic<UInt64>(0)

    /// The run in progress (set and cleared on the script's own thread),
    /// read by the hook when the run goes past the limit.
    nonisolated(unsafe) var currentRun: ScriptRun?
    /// A function past the limit: its name and command line, for FUNCTION
    /// STATS from any thread; nil otherwise (set once per slow run, so fast
    /// runs pay nothing for it).
    let slowFunction = Mutex<(name: String, command: [[UInt8]])?>(nil)

    init(loopIndex: Int, settings: ScriptSettings) {
        self.loopIndex = loopIndex
        self.settings = settings
    }

    /// When the hook last served this thread's clients (see ``checkInterrupt()``);
    /// touched only on the script's own thread.
    private let lastServedNanos = Atomic<UInt64>(0)
    /// How often, at most, a busy script's hook serves its thread's clients.
    static let serveIntervalNanos: UInt64 = 2_000_000

    /// Called from the Lua hook on the script's own thread: notes the time
    /// limit, serves the thread's other clients once past it, and says
    /// whether the script must stop.
    ///
    /// Past the limit the hook polls this loop's sockets (at most every
    /// ``serveIntervalNanos``), as Redis's hook calls
    /// `processEventsWhileBlocked`: clients on the script's own thread get
    /// BUSY like everyone else's, and their SCRIPT KILL, FUNCTION KILL or
    /// SHUTDOWN NOSAVE reach the script. The hook runs between Lua
    /// instructions, never inside a command the script called, so the
    /// shard is between commands; and nothing served from here runs a
    /// command on it (see ``ScriptRuntime/runsInsideBusyScript(_:_:)``).
    func checkInterrupt() -> Bool {
        let started = startedNanos.load(ordering: .acquiring)
        guard started != 0 else { return false }
        let now = Clock.monotonicNanos()
        if !timedOut.load(ordering: .relaxed) {
            let limit = UInt64(max(0, settings.timeLimitMillis.load(ordering: .relaxed))) * 1_000_000
            if now &- started >= limit {
                if let run = currentRun, let function = run.function {
                    let command = [run.sentName, Array(function.name.utf8),
                                   Array(String(run.invocation.keyCount).utf8)] + run.invocation.items
                    slowFunction.withLock { $0 = (function.name, command) }
                }
                timedOut.store(true, ordering: .releasing)
            }
        }
        if timedOut.load(ordering: .relaxed), now &- lastServedNanos.load(ordering: .relaxed) >= Self.serveIntervalNanos,
           let loop = EventLoop.current, loop.index == loopIndex {
            lastServedNanos.store(now, ordering: .relaxed)
            loop.serveClientsWhileBusy()
        }
        return killTarget.load(ordering: .acquiring) == started
    }

    var kind: ScriptKind { isFunction.load(ordering: .relaxed) ? .function : .eval }
}

/// How scripts (EVAL and FCALL) were coordinated, for INFO's `# Transaction`
/// section: Dragonfly's two names, and one counter for each fallback of the
/// undeclared-key design (see ``ScriptFamily``).
public final class ScriptCounters: Sendable {
    /// Runs with every shard lent to the connection's thread (first runs,
    /// keys on several shards or none, scripts known to reach elsewhere).
    public let ioCoordination = Atomic<Int>(0)
    /// Runs on the one shard holding every declared key (inline when owned).
    public let shardLocalCoordination = Atomic<Int>(0)
    /// One-shard runs that reached for an undeclared key elsewhere before
    /// writing, and were rerun with every shard lent.
    public let rerunLent = Atomic<Int>(0)
    /// One-shard runs that reached for an undeclared key elsewhere after a
    /// write: they failed with an error (the script goes back to lent runs).
    public let undeclaredKeyErrors = Atomic<Int>(0)

    public func reset() {
        ioCoordination.store(0, ordering: .relaxed)
        shardLocalCoordination.store(0, ordering: .relaxed)
        rerunLent.store(0, ordering: .relaxed)
        undeclaredKeyErrors.store(0, ordering: .relaxed)
    }
}

/// Scripts by SHA1 (EVAL, SCRIPT LOAD), shared by every thread, and one Lua
/// interpreter per loop thread, created on first use.
public final class ScriptRuntime: @unchecked Sendable {
    // Invariant: `interpreters[i]` and `loadedGeneration[i]` are touched only
    // on loop i; `scripts` and `functionReach` only under their mutex.
    /// EVAL scripts by SHA1: one lookup per EVALSHA finds the body, the
    /// parsed flags and what earlier runs learnt.
    private let scripts = Mutex<[String: ScriptEntry]>([:])
    /// What FCALL runs learnt, by function and library version.
    private let functionReach = Mutex<[String: ScriptReach]>([:])
    private let generation = Atomic<Int>(0)
    private var interpreters: [OpaquePointer?]
    private var loadedGeneration: [Int]
    public let settings = ScriptSettings()
    public let counters = ScriptCounters()
    /// Each EVAL interpreter's Lua heap, sampled every 64 runs (INFO used_memory_lua).
    private let interpreterMemory: Mutex<[Int]>
    /// Runs per loop since the last memory sample (touched only on that loop).
    private var runsSinceMemorySample: [Int]
    /// One record per loop thread (see ``RunningScript``).
    let running: [RunningScript]
    /// How many loops run a script now: lets every command skip the BUSY
    /// scan with one load when none does.
    @usableFromInline let activeCount = Atomic<Int>(0)

    public init(loopCount: Int) {
        interpreters = Array(repeating: nil, count: loopCount)
        loadedGeneration = Array(repeating: 0, count: loopCount)
        interpreterMemory = Mutex(Array(repeating: 0, count: loopCount))
        runsSinceMemorySample = Array(repeating: 0, count: loopCount)
        let settings = self.settings
        running = (0..<loopCount).map { RunningScript(loopIndex: $0, settings: settings) }
    }

    /// `--lua_time_limit` and `--default_lua_flags` (comma-separated).
    public func configure(timeLimitMillis: Int, defaultFlags: String) {
        settings.timeLimitMillis.store(timeLimitMillis, ordering: .relaxed)
        let flags = ScriptFlags.parseList(Substring(defaultFlags))
        settings.defaultFlags.withLock { $0 = flags }
        settings.defaultAllowsUndeclaredKeys.store(flags.contains("allow-undeclared-keys"), ordering: .relaxed)
    }

    var defaultFlags: Set<String> { settings.defaultFlags.withLock { $0 } }

    // MARK: Running scripts, BUSY and KILL

    /// Marks the start of a script on loop `loop` (its own thread).
    func begin(loop: Int, kind: ScriptKind, run: ScriptRun? = nil) {
        let record = running[loop]
        record.currentRun = run
        record.wrote.store(false, ordering: .relaxed)
        record.timedOut.store(false, ordering: .relaxed)
        record.isFunction.store(kind == .function, ordering: .relaxed)
        record.startedNanos.store(max(Clock.monotonicNanos(), 1), ordering: .releasing)
        activeCount.add(1, ordering: .releasing)
    }

    /// Marks the end of the script running on loop `loop`.
    func end(loop: Int) {
        let record = running[loop]
        record.currentRun = nil
        if record.timedOut.load(ordering: .relaxed) { record.slowFunction.withLock { $0 = nil } }
        record.startedNanos.store(0, ordering: .releasing)
        record.timedOut.store(false, ordering: .relaxed)
        activeCount.subtract(1, ordering: .releasing)
    }

    /// The script on `loop` called a write command (it can no longer be killed).
    public func noteWrite(loop: Int) {
        running[loop].wrote.store(true, ordering: .relaxed)
    }

    /// Whether a script may be running: the one load ``busyError()`` makes
    /// first, inlined where a command path asks (nearly always false).
    @inlinable public var mayBeBusy: Bool { activeCount.load(ordering: .acquiring) > 0 }

    /// The BUSY error a client gets while a script has run past the time
    /// limit; nil otherwise.
    @inline(__always)
    public func busyError() -> String? {
        guard mayBeBusy else { return nil }
        // Every loop's record, this loop's included: a client on the
        // script's own thread is only ever dispatched while the script runs
        // from the script's hook (EventLoop.serveClientsWhileBusy).
        for record in running where record.timedOut.load(ordering: .acquiring)
            && record.startedNanos.load(ordering: .acquiring) != 0 {
            return ScriptRuntime.busyText(record.kind)
        }
        return nil
    }

    static func busyText(_ kind: ScriptKind) -> String {
        switch kind {
        case .eval: return "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        case .function: return "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        }
    }

    /// FUNCTION STATS's `running_script` while busy: the BUSY error when an
    /// EVAL script is past the limit (as Redis answers), the function past
    /// it (name, command line, ms run so far), or nil.
    func slowScript() -> Result<(name: String, command: [[UInt8]], millis: Int), ReplyError>? {
        guard activeCount.load(ordering: .acquiring) > 0 else { return nil }
        for record in running where record.timedOut.load(ordering: .acquiring) {
            let started = record.startedNanos.load(ordering: .acquiring)
            guard started != 0 else { continue }
            if record.kind == .eval { return .failure(ReplyError(ScriptRuntime.busyText(.eval))) }
            if let slow = record.slowFunction.withLock({ $0 }) {
                return .success((slow.name, slow.command, Int((Clock.monotonicNanos() &- started) / 1_000_000)))
            }
        }
        return nil
    }

    struct ReplyError: Error { let text: String; init(_ text: String) { self.text = text } }

    /// SCRIPT KILL (`.eval`) or FUNCTION KILL (`.function`): asks every
    /// script past the time limit to stop, on any thread (one on the
    /// client's own thread hears it when its hook serves the client).
    /// Returns nil when one was asked to stop (reply OK), else the
    /// error Redis 7.0 answers: NOTBUSY, UNKILLABLE after a write, or BUSY
    /// when the running script is of the other kind.
    public func requestKill(kind: ScriptKind) -> String? {
        var failure: String? = nil
        var killed = false
        for record in running {
            let started = record.startedNanos.load(ordering: .acquiring)
            guard started != 0, record.timedOut.load(ordering: .acquiring) else { continue }
            if record.wrote.load(ordering: .acquiring) {
                failure = failure ?? "UNKILLABLE Sorry the script already executed write commands against the dataset. "
                    + "You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command."
            } else if record.kind != kind {
                failure = failure ?? ScriptRuntime.busyText(record.kind)
            } else {
                record.killTarget.store(started, ordering: .releasing)
                killed = true
            }
        }
        if killed { return nil }
        return failure ?? "NOTBUSY No scripts in execution right now."
    }

    /// Connects an interpreter running on loop `loop` to that loop's record,
    /// so its count hook notes the time limit and obeys KILL. Any other
    /// interpreter (FCALL's) must be connected the same way, and its runs
    /// bracketed by ``begin(loop:kind:)`` / ``end(loop:)``.
    public func installInterrupt(on lua: OpaquePointer, loop: Int) {
        dfly_lua_set_interrupt(lua, scriptInterruptCheck, Unmanaged.passUnretained(running[loop]).toOpaque())
    }

    /// SHUTDOWN: stops every running script, written or not.
    public func killAll() {
        for record in running {
            let started = record.startedNanos.load(ordering: .acquiring)
            if started != 0 { record.killTarget.store(started, ordering: .releasing) }
        }
    }

    /// Commands Redis 7.0 runs while a script is busy (CMD_ALLOW_BUSY, as
    /// observed on redis-server 7.0): connection and transaction bookkeeping,
    /// the KILL subcommands, FUNCTION STATS and SHUTDOWN NOSAVE. (EXEC is refused, with
    /// EXECABORT and the BUSY text.)
    public static func allowedWhileBusy(_ name: String, _ args: CommandArguments) -> Bool {
        switch name {
        case "auth", "hello", "multi", "discard", "watch", "unwatch", "reset", "quit":
            return true
        case "script":
            // Any arity: the handler then answers SCRIPT KILL's own arity error, as Redis does.
            return args.count >= 2 && args.string(1).lowercased() == "kill"
        case "function":
            return args.count >= 2 && ["kill", "stats"].contains(args.string(1).lowercased())
        case "shutdown":
            return (1..<args.count).contains { args.string($0).lowercased() == "nosave" }
        default:
            return false
        }
    }

    /// Whether a command that runs while busy (``allowedWhileBusy(_:_:)``)
    /// may also run from inside the busy script's hook, on the script's own
    /// thread: only those that run no command on a shard and no
    /// interpreter. WATCH is scheduled on the keys' shards like a command
    /// and RESET does as much as a disconnect and more, so a client on the
    /// script's thread that sends one waits, its input unread, until the
    /// script ends. (DISCARD and UNWATCH only drop the client's entries
    /// from the watch tables, as a client closing does.)
    public static func runsInsideBusyScript(_ name: String, _ args: CommandArguments) -> Bool {
        switch name {
        case "watch", "reset": return false
        default: return allowedWhileBusy(name, args)
        }
    }

    func entry(_ sha: String) -> ScriptEntry? { scripts.withLock { $0[sha] } }
    /// Stores `body` under `sha`; an entry already there (and what it learnt) stays.
    @discardableResult
    func store(_ sha: String, _ body: [UInt8]) -> ScriptEntry {
        scripts.withLock { table in
            if let known = table[sha] { return known }
            let created = ScriptEntry(sha: sha, body: body)
            table[sha] = created
            return created
        }
    }
    func exists(_ sha: String) -> Bool { scripts.withLock { $0[sha] != nil } }
    /// INFO number_of_cached_scripts.
    public var cachedScriptCount: Int { scripts.withLock { $0.count } }
    /// INFO used_memory_lua: the EVAL interpreters' heaps, as last sampled.
    public var interpreterHeapBytes: Int { interpreterMemory.withLock { $0.reduce(0, +) } }

    /// Samples loop `loop`'s interpreter heap now and then (called after a run on that loop).
    func noteRun(loop: Int, lua: OpaquePointer) {
        runsSinceMemorySample[loop] &+= 1
        guard runsSinceMemorySample[loop] % 64 == 1 else { return }
        let bytes = Int(dfly_lua_memory(lua))
        interpreterMemory.withLock { $0[loop] = bytes }
    }
    func flush() {
        scripts.withLock { $0.removeAll() }
        generation.add(1, ordering: .relaxed)
    }
    /// FCALL's counterpart of ``ScriptEntry/reach``, keyed by `id`.
    func reach(forFunction id: String) -> ScriptReach {
        functionReach.withLock { table in
            if let known = table[id] { return known }
            let created = ScriptReach()
            table[id] = created
            return created
        }
    }

    /// This thread's interpreter with `sha` compiled in; or the compile error.
    func interpreter(loop: Int, sha: String, body: [UInt8]) -> Result<OpaquePointer, CompileError> {
        let lua = threadInterpreter(loop: loop)
        if dfly_lua_has(lua, sha) == 0, let error = compile(sha: sha, body: body, into: lua) {
            return .failure(error)
        }
        return .success(lua)
    }

    /// This thread's interpreter, emptied after a SCRIPT FLUSH elsewhere.
    func threadInterpreter(loop: Int) -> OpaquePointer {
        let current = generation.load(ordering: .relaxed)
        if interpreters[loop] == nil {
            let created = dfly_lua_create()!
            installInterrupt(on: created, loop: loop)
            interpreters[loop] = created
        }
        let lua = interpreters[loop]!
        if loadedGeneration[loop] != current {
            dfly_lua_flush(lua)
            loadedGeneration[loop] = current
        }
        return lua
    }

    /// Compiles `body` as the script `sha` in `lua`; the error when it does not compile.
    func compile(sha: String, body: [UInt8], into lua: OpaquePointer) -> CompileError? {
        var error: UnsafeMutablePointer<CChar>? = nil
        // An empty script is a valid (empty) chunk: give Lua a real pointer.
        var padded = body + [0]
        if body.starts(with: Array("#!".utf8)) {
            // Redis 7 reads the `#!lua` line itself; Lua sees an empty first
            // line, so line numbers in errors stay the script's.
            let end = body.firstIndex(of: UInt8(ascii: "\n")) ?? body.count
            for i in 0..<end { padded[i] = UInt8(ascii: " ") }
        }
        let rc = padded.withUnsafeBytes { raw in
            dfly_lua_load(lua, sha, raw.baseAddress!.assumingMemoryBound(to: CChar.self), body.count, &error)
        }
        guard rc != 0 else { return nil }
        let message = error.map { String(cString: $0) } ?? "unknown error"
        free(error)
        return CompileError(message: message)
    }

    struct CompileError: Error {
        let message: String
    }
}

/// The Lua hook's question (see dfly_lua_set_interrupt): the context is the
/// loop's ``RunningScript``, retained by the runtime for its whole life.
private let scriptInterruptCheck: dfly_lua_interrupt_fn = { context in
    Unmanaged<RunningScript>.fromOpaque(context!).takeUnretainedValue().checkInterrupt() ? 1 : 0
}

/// What a script's runs have taught about where it reaches: the first run
/// is always lent every shard; if it stayed on its declared keys' shard the
/// next runs take the one-shard path, until one reaches beyond it.
final class ScriptReach: Sendable {
    /// Seen touching undeclared keys on other shards: runs with every shard lent.
    let mustLend = Atomic<Bool>(false)
    /// Run lent, it touched only its declared keys' shard.
    let knownLocal = Atomic<Bool>(false)

    /// Whether a run whose declared keys share one shard may run there alone.
    var takesOneShardPath: Bool {
        knownLocal.load(ordering: .relaxed) && !mustLend.load(ordering: .relaxed)
    }

    func markMustLend() {
        mustLend.store(true, ordering: .relaxed)
        knownLocal.store(false, ordering: .relaxed)
    }

    func markKnownLocal() {
        if !mustLend.load(ordering: .relaxed) { knownLocal.store(true, ordering: .relaxed) }
    }
}

/// One EVAL script known by SHA1, with its first-line flags parsed once
/// (not on every EVALSHA).
final class ScriptEntry: Sendable {
    let sha: String
    let body: [UInt8]
    /// The script starts with a Redis 7 `#!lua` line: over maxmemory and
    /// under *_RO its flags decide (a script without one runs in Redis's
    /// compatible mode).
    let hasLuaShebang: Bool
    /// Redis 7's `no-writes` and `allow-oom` flags.
    let noWrites: Bool
    let allowsOOM: Bool
    /// Dragonfly's `allow-undeclared-keys` from the first line; nil when the
    /// script names no flags (`--default_lua_flags` decides).
    let allowsUndeclaredKeys: Bool?
    let reach = ScriptReach()

    init(sha: String, body: [UInt8]) {
        self.sha = sha
        self.body = body
        let flags = ScriptFlags.declared(in: body)
        hasLuaShebang = body.starts(with: Array("#!lua".utf8))
        noWrites = hasLuaShebang && flags?.contains("no-writes") == true
        allowsOOM = hasLuaShebang && flags?.contains("allow-oom") == true
        allowsUndeclaredKeys = flags.map { $0.contains("allow-undeclared-keys") }
    }
}

/// KEYS and ARGV of one EVAL or FCALL, copied out of the receive buffer (the
/// run may happen after a hop, when that buffer holds other commands) into a
/// single allocation, with the hashes the locks need and the shard the keys
/// share, if they share one.
struct ScriptInvocation {
    /// Every item back to back after a sentinel byte, so even an empty item
    /// has a valid address to give C.
    private let storage: [UInt8]
    /// Where each item ends in `storage`: keys first, then arguments.
    private let ends: [Int]
    let keyCount: Int
    let keyHashes: [UInt64]
    /// The shard of every declared key, when there are keys and they share one.
    let singleShard: Int?

    var argumentCount: Int { ends.count - keyCount }

    /// The keys, then the arguments, as copies (FUNCTION STATS's command line).
    var items: [[UInt8]] {
        var start = 1
        return ends.map { end in
            defer { start = end }
            return Array(storage[start..<end])
        }
    }

    /// The keys are `keyCount` arguments from index `firstKey`; ARGV is the rest.
    init(_ call: CommandCall, firstKey: Int, keyCount: Int) {
        var storage: [UInt8] = [0]
        var ends: [Int] = []
        var hashes: [UInt64] = []
        ends.reserveCapacity(call.args.count - firstKey)
        hashes.reserveCapacity(keyCount)
        var shard: Int? = nil
        var shared = keyCount > 0
        let shardSet = call.shardSet
        for index in firstKey..<call.args.count {
            let item = call.args[index]
            storage.append(contentsOf: item)
            ends.append(storage.count)
            if index < firstKey + keyCount {
                let hash = KeyHash.hash(item)
                hashes.append(hash)
                let owner = shardSet.shardIndex(of: item, hash: hash)
                if shard == nil { shard = owner } else if shard != owner { shared = false }
            }
        }
        self.storage = storage
        self.ends = ends
        self.keyCount = keyCount
        self.keyHashes = hashes
        self.singleShard = shared ? shard : nil
    }

    /// KEYS (pointers and lengths) and ARGV for C, valid inside `body`.
    func withCArrays<R>(
        _ body: (_ keys: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ keyLengths: UnsafeMutablePointer<Int>,
                 _ args: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ argLengths: UnsafeMutablePointer<Int>) -> R
    ) -> R {
        let count = ends.count
        return storage.withUnsafeBytes { raw in
            withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: count + 1) { pointers in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: count + 1) { lengths in
                    let base = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
                    var start = 1
                    for i in 0..<count {
                        pointers[i] = base + start
                        lengths[i] = ends[i] - start
                        start = ends[i]
                    }
                    let p = pointers.baseAddress!, l = lengths.baseAddress!
                    return body(p, l, p + keyCount, l + keyCount)
                }
            }
        }
    }
}

/// Dragonfly's script flags: a first line `--!df flags=a,b` (or Redis 7's
/// `#!lua flags=...`), else `--default_lua_flags`.
public enum ScriptFlags {
    /// Every script runs atomically here; `disable-atomicity` is accepted
    /// (atomic is stronger than it asks for) and changes nothing.
    public static let known: Set<String> = ["allow-undeclared-keys", "disable-atomicity"]

    /// The flags named on the script's first line (`--!df flags=a,b`, or the
    /// `flags=` option of a `#!lua` line); nil when it names none.
    static func declared(in body: [UInt8]) -> Set<String>? {
        let text = String(decoding: body.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        if text.hasPrefix("--!df flags=") { return parseList(text.dropFirst("--!df flags=".count)) }
        guard let words = shebangWords(text), words.first == "#!lua" else { return nil }
        return words.dropFirst().first { $0.hasPrefix("flags=") }.map { parseList($0.dropFirst("flags=".count)) }
    }

    /// A `#!` first line split as Redis splits it (on spaces); nil for another line.
    private static func shebangWords(_ firstLine: String) -> [Substring]? {
        firstLine.hasPrefix("#!") ? firstLine.split(separator: " ", omittingEmptySubsequences: true) : nil
    }

    /// Redis 7's script flags (a `#!lua flags=` line); Dragonfly's are accepted there too.
    static let redisKnown: Set<String> = ["no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"]

    /// Redis 7's error for a bad `#!` first line (other engine, unknown option
    /// or flag); nil when the script has none or a valid one.
    static func shebangError(in body: [UInt8]) -> String? {
        guard body.starts(with: Array("#!".utf8)) else { return nil }
        guard body.contains(UInt8(ascii: "\n")) else { return "ERR Invalid script shebang" }
        let words = shebangWords(String(decoding: body.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)) ?? []
        guard words.first == "#!lua" else { return "ERR Unexpected engine in script shebang: \(words.first ?? "")" }
        for option in words.dropFirst() {
            guard option.hasPrefix("flags=") else { return "ERR Unknown lua shebang option: \(option)" }
            for flag in option.dropFirst("flags=".count).split(separator: ",")
            where !redisKnown.contains(String(flag)) && !known.contains(String(flag)) {
                return "ERR Unexpected flag in script shebang: \(flag)"
            }
        }
        return nil
    }

    /// `a,b, c` → {a, b, c}.
    public static func parseList(_ text: Substring) -> Set<String> {
        Set(text.split(separator: ",").map { String($0.filter { $0 != " " && $0 != "\t" && $0 != "\r" }) }.filter { !$0.isEmpty })
    }
}

/// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT.
///
/// Atomic by construction: a script whose declared keys all live on one shard
/// runs on that shard's thread under those keys' locks (one hop; inline on
/// the owning thread). Any other script — keys on several shards, no keys, or
/// one already seen touching undeclared keys elsewhere — runs under a global
/// transaction that lends every shard to the script's thread: nothing else
/// touches the keyspace until it is done. A script's first run is always
/// lent: if it stayed on its declared keys' shard, later runs take the fast
/// path. Should a later run reach (data-dependently) for an undeclared key
/// on another shard, it is rerun lent when it has not written yet, and its
/// SHA goes back to lent runs; after a write it fails with an error.
public enum ScriptFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "scripting"
        for (name, bySha, readOnly) in [("eval", false, false), ("evalsha", true, false), ("eval_ro", false, true), ("evalsha_ro", true, true)] {
            // Not denyOOM as commands: over maxmemory Redis 7 refuses a script
            // with a `#!lua` line unless it is no-writes or allow-oom, and a
            // script without one fails at its first denyOOM command (see eval).
            r.register(name, arity: -3, flags: readOnly ? [.readonly, .noscript] : [.write, .noscript], group: g) { call in
                eval(call, bySha: bySha)
            }
        }
        r.register("script", arity: -2, flags: [.noscript], group: g) { call in script(call) }
    }

    static func sha(of body: [UInt8]) -> String {
        var hex = [CChar](repeating: 0, count: 41)
        body.withUnsafeBytes { dfly_sha1_hex($0.baseAddress, $0.count, &hex) }
        return String(cString: hex)
    }

    static func script(_ call: CommandCall) {
        let runtime = call.engine.scripts
        switch call.args.string(1).lowercased() {
        case "load" where call.args.count == 3:
            let body = call.args.bytes(2)
            if let error = ScriptFlags.shebangError(in: body) { return call.reply(.error(error)) }
            let digest = sha(of: body)
            if case .failure(let error) = runtime.interpreter(loop: call.loop.index, sha: digest, body: body) {
                return call.reply(.error("ERR Error compiling script (new function): \(error.message)"))
            }
            runtime.store(digest, body)
            call.reply(.bulkString(digest))
        case "exists" where call.args.count >= 3:
            call.reply(.array((2..<call.args.count).map { .integer(runtime.exists(call.args.string($0).lowercased()) ? 1 : 0) }))
        case "flush" where call.args.count == 2 || (call.args.count == 3 && (call.isArg(2, "sync") || call.isArg(2, "async"))):
            runtime.flush()
            call.reply(.ok)
        case "kill" where call.args.count == 2:
            // Runs while busy (allowedWhileBusy), from any thread, the script's own included.
            if let failure = runtime.requestKill(kind: .eval) {
                call.reply(.error(failure))
            } else {
                call.reply(.ok)
            }
        case let sub where ["load", "exists", "kill"].contains(sub):
            call.reply(.error("ERR wrong number of arguments for 'script|\(sub)' command"))
        case "flush":
            call.reply(.error("ERR SCRIPT FLUSH only support SYNC|ASYNC option"))
        default:
            call.reply(.error("ERR unknown subcommand '\(call.args.string(1))'. Try SCRIPT HELP."))
        }
    }

    static let oomError = "OOM command not allowed when used memory > 'maxmemory'."

    /// EVALSHA's digest in lower case, without a second copy when it already is.
    private static func shaArgument(_ raw: UnsafeRawBufferPointer) -> String {
        let text = String(decoding: raw, as: UTF8.self)
        return raw.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) ? text.lowercased() : text
    }

    static func eval(_ call: CommandCall, bySha: Bool) {
        // Redis's evalShaCommand answers a digest of the wrong length before
        // it reads numkeys (no script can match it).
        if bySha && call.args[1].count != 40 {
            return call.reply(.error("NOSCRIPT No matching script. Please use EVAL."))
        }
        guard let keyCount = call.integer(2) else { return call.reply(.notInteger) }
        guard keyCount >= 0 else { return call.reply(.error("ERR Number of keys can't be negative")) }
        guard keyCount <= Int64(call.args.count - 3) else {
            return call.reply(.error("ERR Number of keys can't be greater than number of args"))
        }
        let runtime = call.engine.scripts
        let script: ScriptEntry
        if bySha {
            guard let found = runtime.entry(shaArgument(call.args[1])) else {
                return call.reply(.error("NOSCRIPT No matching script. Please use EVAL."))
            }
            script = found
        } else {
            let body = call.args.bytes(1)
            let sha = ScriptFamily.sha(of: body)
            if let known = runtime.entry(sha) {
                script = known
            } else {
                if let error = ScriptFlags.shebangError(in: body) { return call.reply(.error(error)) }
                if case .failure(let error) = runtime.interpreter(loop: call.loop.index, sha: sha, body: body) {
                    return call.reply(.error("ERR Error compiling script (new function): \(error.message)"))
                }
                script = runtime.store(sha, body)
            }
        }
        if script.hasLuaShebang && !script.noWrites {
            // Redis's order: the script counts as a write command for processCommand's
            // checks (OOM, NOREPLICAS, READONLY), then EVAL_RO's own.
            if !script.allowsOOM && call.engine.isOverMemoryLimit { return call.reply(.error(ScriptFamily.oomError)) }
            if call.engine.tooFewReplicas.load(ordering: .relaxed) { return call.reply(.error(Engine.noReplicasError)) }
            if call.engine.readOnlyReplica.load(ordering: .relaxed) && !call.client.isMaster {
                return call.reply(.error(Engine.readOnlyReplicaError))
            }
            if call.spec.flags.contains(.readonly) {
                return call.reply(.error("ERR Can not execute a script with write flag using *_ro command."))
            }
        }
        let invocation = ScriptInvocation(call, firstKey: 3, keyCount: Int(keyCount))
        let wantsLending = script.allowsUndeclaredKeys ?? runtime.settings.defaultAllowsUndeclaredKeys.load(ordering: .relaxed)
        let declaredShard = wantsLending ? nil : invocation.singleShard
        let run = ScriptRun(call: call, sha: script.sha, body: script.body, invocation: invocation, reach: script.reach,
                            allowsOOM: script.allowsOOM, noWrites: script.noWrites)
        if let declaredShard, script.reach.takesOneShardPath {
            run.onOwningShard(shardIndex: declaredShard)
        } else {
            run.withLentShards(declaredShard: declaredShard)
        }
    }
}

/// One EVAL: runs the script where it must, with redis.call executing
/// commands synchronously through the same command handlers clients use.
final class ScriptRun: ReplySink, @unchecked Sendable {
    // Invariant: used by one thread at a time: the coordinating loop, then
    // (while the script runs) the shard's thread, then the loop again.
    let call: CommandCall
    let sha: String
    let body: [UInt8]
    let invocation: ScriptInvocation
    /// Where the script reached on earlier runs; updated by this one.
    let reach: ScriptReach
    /// Set for FCALL: the function run instead of the script `body`.
    let function: FunctionTarget?
    /// FCALL's command name as the client spelled it (empty for EVAL).
    let sentName: [UInt8]
    /// The script may write over maxmemory (Redis 7's `allow-oom` flag).
    let allowsOOM: Bool
    /// Write commands are refused inside (Redis 7's `no-writes` flag).
    let noWrites: Bool
    private var execution: ScriptExecution?
    /// The loop whose thread runs the script now (for the running-script record).
    private var runningLoop = 0
    private var lastReply: Reply = .none
    private let commandArguments = CommandArguments()
    /// The client redis.call runs as (see ``ClientState/forScript()``); made at the first call.
    private var scriptClient: ClientState?

    /// A Redis 7 function (FCALL), called as fn(KEYS, ARGV).
    struct FunctionTarget {
        let library: FunctionLibrary
        let name: String
    }

    init(call: CommandCall, sha: String, body: [UInt8], invocation: ScriptInvocation, reach: ScriptReach,
         function: FunctionTarget? = nil, allowsOOM: Bool = false, noWrites: Bool = false) {
        self.allowsOOM = allowsOOM
        self.noWrites = noWrites
        self.call = call
        self.sha = sha
        self.body = body
        self.invocation = invocation
        self.reach = reach
        self.function = function
        // FUNCTION STATS shows the command as sent; read now, while the
        // argument views are still those of this command.
        self.sentName = function == nil ? [] : call.args.bytes(0)
    }

    func complete(_ reply: Reply) { lastReply = reply }

    /// Fast path: all declared keys on one shard.
    func onOwningShard(shardIndex: Int) {
        if call.insideExec { return withLentShards(declaredShard: nil) }
        let counters = call.engine.scripts.counters
        counters.shardLocalCoordination.add(1, ordering: .relaxed)
        let database = call.client.database
        let locks = ShardLockSet(
            fingerprints: invocation.keyHashes.map { lockFingerprint(keyHash: $0, database: database) }, mode: .exclusive)
        let sink = call.sink
        call.shardSet.runSingleShard(from: call.loop, shard: shardIndex, locks: locks, { [self] shard -> Reply? in
            let execution = ScriptExecution(mode: .onShard(shard))
            let reply = run(execution, loopIndex: shard.loop.index)
            if execution.touchedForeignKey && !execution.wrote {
                reach.markMustLend()
                counters.rerunLent.add(1, ordering: .relaxed)
                return nil  // rerun with every shard lent
            }
            if execution.touchedForeignKey { counters.undeclaredKeyErrors.add(1, ordering: .relaxed) }
            return reply
        }, done: { [self] reply in
            if let reply { sink.complete(reply) } else { withLentShards(declaredShard: nil) }
        })
    }

    /// General path: a global transaction lends every shard to this thread.
    func withLentShards(declaredShard: Int?) {
        call.engine.scripts.counters.ioCoordination.add(1, ordering: .relaxed)
        let sink = call.sink
        call.withEveryShardLent({ [self] in
            let execution = ScriptExecution(mode: .lentShards)
            let reply = run(execution, loopIndex: call.loop.index)
            if let declaredShard, execution.touchedShards.isSubset(of: [declaredShard]) {
                reach.markKnownLocal()
            }
            return reply
        }, done: { sink.complete($0) })
    }

    /// Runs the script with this execution mode on the calling thread.
    private func run(_ execution: ScriptExecution, loopIndex: Int) -> Reply {
        self.execution = execution
        execution.caller = call.client
        if call.shardSet.tracking.isActive {
            execution.declaredKeys = invocation.items.prefix(invocation.keyCount).map { KeyRef($0) }
        }
        scriptClient = nil  // a rerun starts from the caller's database again
        defer { self.execution = nil }
        if let function { return runFunction(function, loopIndex: loopIndex) }
        let runtime = call.engine.scripts
        let lua = runtime.threadInterpreter(loop: loopIndex)
        var out: UnsafeMutablePointer<CChar>? = nil
        var outLength = 0
        let context = Unmanaged.passUnretained(self).toOpaque()
        runtime.begin(loop: loopIndex, kind: .eval, run: self)
        runningLoop = loopIndex
        defer { runtime.end(loop: loopIndex) }
        // Run first, compile only when this thread has not seen the script:
        // one registry lookup per run instead of two.
        func attempt() -> Int32 {
            sha.withCString { cSha in
                invocation.withCArrays { keyPointers, keyLengths, argPointers, argLengths in
                    dfly_lua_run(
                        lua, cSha, Int32(invocation.keyCount), keyPointers, keyLengths, Int32(invocation.argumentCount),
                        argPointers, argLengths, Int32(call.client.protocolVersion), scriptCommandTrampoline, context,
                        &out, &outLength)
                }
            }
        }
        if attempt() != 0 {
            if let error = runtime.compile(sha: sha, body: body, into: lua) {
                return .error("ERR Error compiling script (new function): \(error.message)")
            }
            _ = attempt()
        }
        runtime.noteRun(loop: loopIndex, lua: lua)
        defer { free(out) }
        guard let out else { return .null }
        return result(out, outLength, loop: loopIndex)
    }

    /// The script's RESP reply. An error is `.error` (counted by the connection) unless the
    /// command it passes on counted it already; then it stays raw and only the script's
    /// command counts a failed call (Redis's ERR_REPLY_FLAG_NO_STATS_UPDATE).
    private func result(_ out: UnsafeMutablePointer<CChar>, _ length: Int, loop: Int) -> Reply {
        let bytes = UnsafeRawBufferPointer(start: out, count: length)
        guard length >= 3, bytes[0] == UInt8(ascii: "-") else { return .raw(Array(bytes)) }
        if dfly_lua_error_precounted() != 0 {
            call.spec.stats[loop].failedCalls.addOwned(1)
            return .raw(Array(bytes))
        }
        return .error(String(decoding: bytes[1..<(length - 2)], as: UTF8.self))
    }

    /// FCALL: the function from this thread's function engine.
    private func runFunction(_ function: FunctionTarget, loopIndex: Int) -> Reply {
        let runtime = call.engine.functions
        let engine: OpaquePointer
        switch runtime.engine(loop: loopIndex, for: function.library) {
        case .failure(let error): return .error(error.message)
        case .success(let e): engine = e
        }
        call.engine.scripts.begin(loop: loopIndex, kind: .function, run: self)
        runningLoop = loopIndex
        defer { call.engine.scripts.end(loop: loopIndex) }
        var out: UnsafeMutablePointer<CChar>? = nil
        var outLength = 0
        var rc: Int32 = 0
        let context = Unmanaged.passUnretained(self).toOpaque()
        invocation.withCArrays { keyPointers, keyLengths, argPointers, argLengths in
            rc = dfly_fn_call(
                engine, function.library.name, function.name, Int32(invocation.keyCount), keyPointers, keyLengths,
                Int32(invocation.argumentCount), argPointers, argLengths, Int32(call.client.protocolVersion),
                scriptCommandTrampoline, context, &out, &outLength)
        }
        runtime.noteMemory(loop: loopIndex)
        defer { free(out) }
        guard rc == 0, let out else { return .error("ERR Function not found") }
        return result(out, outLength, loop: loopIndex)
    }

    /// redis.call / redis.pcall: runs one command synchronously.
    func execute(argc: Int, argv: UnsafePointer<UnsafePointer<CChar>?>, lengths: UnsafePointer<Int>, resp: Int) -> [UInt8] {
        commandArguments.removeAll()
        for i in 0..<argc {
            commandArguments.append(UnsafeRawBufferPointer(start: argv[i], count: lengths[i]))
        }
        if resp == Int(DFLY_LUA_ACL_CHECK) { return aclCheck() }
        var out = ReplyBuilder(protocolVersion: resp, capacity: 64)
        let counters = call.engine.loopCounters[runningLoop]
        /// A call refused before it runs: an error of the statistics and a rejected call of
        /// the command (Redis's scriptCall), so the script's own error reply, which passes
        /// this one on, is not counted again (dfly_lua_error_precounted).
        /// The name a container's call runs under (`config|get`); nil for a plain command or a container alone.
        var subcommand: String? = nil
        func refuse(_ message: String, _ spec: CommandSpec?) -> [UInt8] {
            out.error(message)
            counters.countError(message)
            spec?.statsList(fullName: subcommand)?[runningLoop].rejectedCalls.addOwned(1)
            return out.buffer
        }
        guard let spec = call.engine.registry.lookup(commandArguments[0]) else {
            return refuse("ERR Unknown Redis command called from script", nil)
        }
        if spec.hasSubcommands && argc > 1 { subcommand = spec.fullName(subcommand: commandArguments[1]) }
        guard spec.acceptsArgumentCount(argc),
              subcommand.flatMap({ spec.subcommandArityError(fullName: $0, argumentCount: argc) }) == nil else {
            return refuse("ERR Wrong number of args calling Redis command from script", spec)
        }
        if !call.engine.scripts.settings.denyDisabled.load(ordering: .relaxed), spec.flags.contains(.noscript) || (spec.firstKey == 0 && !ScriptRun.keylessAllowed.contains(spec.name)
            && !ScriptRun.keyspaceWide.contains(spec.name) && !ScriptRun.numkeysCommands.contains(spec.name)) {
            return refuse("ERR This Redis command is not allowed from script", spec)
        }
        if let user = call.client.user, !user.unrestricted.load(ordering: .relaxed),
           let refusal = call.engine.aclRefusal(call.client, user, spec, commandArguments, context: .lua) {
            // The caller's user, checked like a command of its own (Redis's scriptVerifyACL).
            return refuse("ERR The user executing the script " + ScriptRun.aclMessage(refusal.denial), spec)
        }
        if ScriptRun.keyspaceWide.contains(spec.name), let execution {
            // Walks every shard: only possible with every shard lent.
            switch execution.mode {
            case .onShard:
                execution.touchedForeignKey = true
                ScriptExecution.foreignKeyError.encode(into: &out)
                return out.buffer
            case .lentShards:
                execution.touchedShards.formUnion(0..<call.shardSet.count)
            }
        }
        if spec.writesOrMayReplicate && (call.spec.flags.contains(.readonly) || noWrites) {
            // EVAL_RO / EVALSHA_RO / FCALL_RO, or a `no-writes` script or function; PUBLISH
            // too, which would reach replicas (Redis 7.0's text, with its full stop)
            return refuse("ERR Write commands are not allowed from read-only scripts.", spec)
        }
        if spec.writesAsRedis && call.engine.readOnlyReplica.load(ordering: .relaxed) && !call.client.isMaster {
            return refuse(Engine.readOnlyReplicaError, spec)
        }
        if spec.flags.contains(.denyOOM) && !allowsOOM && call.engine.isOverMemoryLimit {
            return refuse(ScriptFamily.oomError, spec)
        }
        if spec.flags.contains(.write) && call.engine.tooFewReplicas.load(ordering: .relaxed) {
            return refuse(Engine.noReplicasError, spec)
        }
        if spec.flags.contains(.write) { call.engine.scripts.noteWrite(loop: runningLoop) }
        lastReply = .none
        let client = scriptClient ?? call.client.forScript()
        scriptClient = client
        client.protocolVersion = resp
        if call.engine.monitors.isActive && !spec.flags.contains(.admin) {
            let arguments = commandArguments
            call.engine.monitors.feed(
                database: client.database, source: "lua", name: spec.name, count: arguments.count,
                argument: { Array(arguments[$0]) })
        }
        let started = Clock.monotonicNanos()
        spec.handler(CommandCall(
            args: commandArguments, client: client, engine: call.engine, spec: spec, sink: self, script: execution))
        // The called command's own statistics, as Redis's call() keeps them for a script's commands.
        let stats = spec.statsList(fullName: subcommand)?[runningLoop]
        stats?.calls.addOwned(1)
        stats?.microseconds.addOwned(Int((Clock.monotonicNanos() &- started) / 1000))
        if case .error(let message) = lastReply {
            stats?.failedCalls.addOwned(1)
            counters.countError(message)
        }
        lastReply.encode(into: &out)
        return out.buffer
    }

    /// redis.acl_check_cmd: whether the script's user may run the command with these
    /// arguments (":1" / ":0"), nothing run and nothing logged; an unknown command
    /// or subcommand is an error (Redis's luaRedisAclCheckCmdPermissionsCommand).
    private func aclCheck() -> [UInt8] {
        var out = ReplyBuilder(protocolVersion: 2, capacity: 16)
        guard let spec = call.engine.registry.lookup(commandArguments[0]),
              case let (id, unknownSubcommand) = spec.aclID(commandArguments), !unknownSubcommand else {
            out.error("ERR Invalid command passed to redis.acl_check_cmd()")
            return out.buffer
        }
        var allowed = true
        if let user = call.client.user, !user.unrestricted.load(ordering: .relaxed) {
            allowed = user.user.check(id, commandArguments) == nil
        }
        out.integer(allowed ? 1 : 0)
        return out.buffer
    }

    /// Redis's getAclErrorMessage: why a script's call was refused.
    static func aclMessage(_ denial: ACLDenial) -> String {
        switch denial {
        case .command: return "can't run this command or subcommand"
        case .key: return "can't access at least one of the keys mentioned in the command arguments"
        case .channel: return "can't publish to the channel mentioned in the command"
        }
    }

    /// Key-less commands a script may call (they answer synchronously).
    static let keylessAllowed: Set<String> = ["ping", "echo", "time", "publish", "spublish", "select", "xread", "xreadgroup"]
    /// Commands whose keys follow a count (no fixed key position in the
    /// table); their handlers find the keys and reach them like any other.
    static let numkeysCommands: Set<String> = ["lmpop", "blmpop", "zmpop", "bzmpop", "sintercard", "zintercard", "zunion", "zinter", "zdiff"]
    /// Key-less commands that walk the keyspace: synchronous when every shard is lent.
    static let keyspaceWide: Set<String> = ["dbsize", "keys", "scan", "randomkey"]
}

/// The C callback for redis.call: back into the script run.
private let scriptCommandTrampoline: dfly_lua_call_fn = { context, argc, argv, lengths, resp, out, outLength in
    let run = Unmanaged<ScriptRun>.fromOpaque(context!).takeUnretainedValue()
    let bytes = run.execute(argc: Int(argc), argv: argv!, lengths: lengths!, resp: Int(resp))
    let buffer = malloc(max(bytes.count, 1))!.assumingMemoryBound(to: CChar.self)
    bytes.withUnsafeBytes { raw in
        if raw.count > 0 { memcpy(buffer, raw.baseAddress!, raw.count) }
    }
    out!.pointee = buffer
    outLength!.pointee = bytes.count
}
