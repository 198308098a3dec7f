import CLuaBridge
import DamselflyPersistence
import DamselflyRESP
import DamselflyStorage
import Glibc
import Synchronization

/// A refused FUNCTION command or load: Redis's error text.
public struct Refusal: Error, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    public let message: String
    public init(_ message: String) { self.message = message }
    public init(stringLiteral value: String) { message = value }
    public init(stringInterpolation: DefaultStringInterpolation) { message = String(stringInterpolation: stringInterpolation) }
}

/// One function a library registered.
public struct RegisteredFunction: Sendable {
    public let name: String
    public let description: [UInt8]?
    public let flags: UInt32

    public var noWrites: Bool { flags & UInt32(DFLY_FN_NO_WRITES) != 0 }
    public var allowOOM: Bool { flags & UInt32(DFLY_FN_ALLOW_OOM) != 0 }

    /// Flag names in Redis's listing order.
    public var flagNames: [String] {
        let names = ["no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"]
        return names.indices.filter { flags & (1 << UInt32($0)) != 0 }.map { names[$0] }
    }
}

/// A loaded library: its full code (shebang included, as FUNCTION LIST
/// WITHCODE and FUNCTION DUMP give it back) and what it registered.
public struct FunctionLibrary: Sendable {
    public let name: String
    public let code: [UInt8]
    public let functions: [RegisteredFunction]
    /// Unique across the server's lifetime: a thread whose engine holds an
    /// older version of this library compiles it again before calling it.
    let version: Int
}

/// Redis 7 function libraries, shared by every thread, and one Lua function
/// engine per loop thread (apart from the EVAL interpreter, so SCRIPT FLUSH
/// and FUNCTION FLUSH each drop only their own), created on first use.
/// Libraries are compiled into a thread's engine lazily, once per version.
public final class FunctionRuntime: @unchecked Sendable {
    // Invariant: `threads[i]` (an immutable array of per-loop objects) is
    // touched only on loop i, or before the loops start; `state` and
    // `vmMemory` only under their mutexes.
    struct State {
        var libraries: [String: FunctionLibrary] = [:]
        /// Lower-cased function name (Redis looks functions up
        /// case-insensitively) to its library's name and its index there.
        var owners: [String: (library: String, index: Int)] = [:]
        var nextVersion = 0
    }

    private let state = Mutex(State())
    /// Bumped by FUNCTION FLUSH: threads start a fresh engine.
    private let generation = Atomic<Int>(0)
    private let threads: [ThreadEngine]
    /// Each engine's Lua heap in bytes, as of its last load or call (INFO).
    private let vmMemory: Mutex<[Int]>

    /// Connects each new engine's interpreter to its loop's running-script
    /// record (time limit, FUNCTION KILL).
    private let scripts: ScriptRuntime

    public init(loopCount: Int, scripts: ScriptRuntime) {
        self.scripts = scripts
        threads = (0..<loopCount).map { _ in ThreadEngine() }
        vmMemory = Mutex(Array(repeating: 0, count: loopCount))
    }

    // MARK: Reading the shared registry

    public var libraries: [FunctionLibrary] {
        state.withLock { Array($0.libraries.values) }.sorted { $0.name < $1.name }
    }

    /// The library and function FCALL names (case-insensitively).
    func lookup(_ name: String) -> (FunctionLibrary, RegisteredFunction)? {
        state.withLock { s in
            guard let owner = s.owners[name.lowercased()], let library = s.libraries[owner.library] else { return nil }
            return (library, library.functions[owner.index])
        }
    }

    public var counts: (libraries: Int, functions: Int) {
        state.withLock { ($0.libraries.count, $0.owners.count) }
    }

    /// INFO's used_memory_vm_functions: the engines' Lua heaps.
    public var engineMemory: Int { vmMemory.withLock { $0.reduce(0, +) } }

    /// INFO's used_memory_functions: what the registry holds.
    public var registryMemory: Int {
        state.withLock { s in
            s.libraries.values.reduce(0) { sum, library in
                sum + 64 + library.name.utf8.count + library.code.count
                    + library.functions.reduce(0) { $0 + 64 + $1.name.utf8.count + ($1.description?.count ?? 0) }
            }
        }
    }

    // MARK: Per-thread engines

    /// One loop's function engine and the library versions compiled into it.
    private final class ThreadEngine {
        var engine: OpaquePointer?
        var generation = 0
        var versions: [String: Int] = [:]
        var calls = 0
    }

    /// This thread's engine, fresh after a FUNCTION FLUSH.
    private func threadEngine(loop: Int) -> OpaquePointer {
        let current = generation.load(ordering: .acquiring)
        let thread = threads[loop]
        if let engine = thread.engine, thread.generation == current { return engine }
        if let old = thread.engine { dfly_fn_destroy(old) }
        let engine = dfly_fn_create()!
        scripts.installInterrupt(on: dfly_fn_interpreter(engine), loop: loop)
        thread.engine = engine
        thread.generation = current
        thread.versions = [:]
        return engine
    }

    /// Runs a library's code in this thread's engine; its functions, or Redis's error text.
    private func compile(loop: Int, name: String, code: [UInt8], codeStart: Int, version: Int) -> Result<[RegisteredFunction], Refusal> {
        let engine = threadEngine(loop: loop)
        final class Collected { var functions: [RegisteredFunction] = [] }
        let collected = Collected()
        var error: UnsafeMutablePointer<CChar>? = nil
        let body = Array(code[codeStart...]) + [0]
        let rc = withExtendedLifetime(collected) {
            body.withUnsafeBytes { raw in
                dfly_fn_load(
                    engine, name, raw.baseAddress!.assumingMemoryBound(to: CChar.self), body.count - 1,
                    { context, name, nameLength, description, descriptionLength, flags in
                        let collected = Unmanaged<Collected>.fromOpaque(context!).takeUnretainedValue()
                        let name = String(decoding: UnsafeRawBufferPointer(start: name, count: nameLength), as: UTF8.self)
                        let text = description.map { Array(UnsafeRawBufferPointer(start: $0, count: descriptionLength)) }
                        collected.functions.append(RegisteredFunction(name: name, description: text, flags: flags))
                    }, Unmanaged.passUnretained(collected).toOpaque(), &error)
            }
        }
        let bytes = Int(dfly_fn_memory(engine))
        vmMemory.withLock { $0[loop] = bytes }
        if rc != 0 {
            let message = error.map { String(cString: $0) } ?? "unknown error"
            free(error)
            return .failure(Refusal(message))
        }
        threads[loop].versions[name] = version
        return .success(collected.functions.sorted { $0.name < $1.name })
    }

    /// This thread's engine with `library` at its current version compiled in.
    func engine(loop: Int, for library: FunctionLibrary) -> Result<OpaquePointer, Refusal> {
        let engine = threadEngine(loop: loop)
        if threads[loop].versions[library.name] == library.version { return .success(engine) }
        guard case .success(let metadata) = Self.metadata(library.code) else { return .failure("ERR Missing library metadata") }
        switch compile(loop: loop, name: library.name, code: library.code, codeStart: metadata.codeStart, version: library.version) {
        case .success: return .success(engine)
        case .failure(let error): return .failure(Refusal("ERR \(error.message)"))
        }
    }

    /// After a call: refreshes this engine's heap size for INFO now and then
    /// (a shared mutex on every call would cost more than the figure is worth).
    func noteMemory(loop: Int) {
        let thread = threads[loop]
        thread.calls &+= 1
        guard thread.calls % 64 == 1, let engine = thread.engine else { return }
        let bytes = Int(dfly_fn_memory(engine))
        vmMemory.withLock { $0[loop] = bytes }
    }

    // MARK: Changing the registry

    struct Metadata {
        let engine: String
        let name: String
        /// Where the code after the shebang line begins (at its newline).
        let codeStart: Int
    }

    /// The `#!<engine> name=<library>` first line, with Redis 7.0's errors. The line is split
    /// as Redis splits it (sdssplitargs: `name="foo"` is `foo`, an unbalanced quote is invalid
    /// metadata), and the engine is the first word without its `#!` (`#! name=x` has engine '').
    static func metadata(_ code: [UInt8]) -> Result<Metadata, Refusal> {
        guard code.starts(with: [UInt8(ascii: "#"), UInt8(ascii: "!")]) else { return .failure("ERR Missing library metadata") }
        guard let newline = code.firstIndex(of: UInt8(ascii: "\n")) else { return .failure("ERR Invalid library metadata") }
        guard let words = RESPParser.splitLine(Array(code[..<newline])), let first = words.first else {
            return .failure("ERR Invalid library metadata")
        }
        let parts = words.map { String(decoding: $0, as: UTF8.self) }
        let engine = String(decoding: first.dropFirst(2), as: UTF8.self)
        var name: String?
        for part in parts.dropFirst() {
            if part.lowercased().hasPrefix("name=") {
                guard name == nil else { return .failure("ERR Invalid metadata value, name argument was given multiple times") }
                name = String(part.dropFirst(5))
            } else {
                return .failure("ERR Invalid metadata value given: \(part)")
            }
        }
        guard let name else { return .failure("ERR Library name was not given") }
        return .success(Metadata(engine: engine, name: name, codeStart: newline))
    }

    static let invalidName = "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 }
    }

    /// Parses, checks and compiles one library on this thread, not yet committed.
    private func prepare(_ code: [UInt8], loop: Int, replace: Bool, checkExisting: Bool) -> Result<FunctionLibrary, Refusal> {
        let metadata: Metadata
        switch Self.metadata(code) {
        case .failure(let error): return .failure(error)
        case .success(let m): metadata = m
        }
        guard Self.isValidName(metadata.name) else { return .failure(Refusal(Self.invalidName)) }
        guard metadata.engine.lowercased() == "lua" else { return .failure("ERR Engine '\(metadata.engine)' not found") }
        let (exists, version): (Bool, Int) = state.withLock { s in
            s.nextVersion += 1
            return (s.libraries[metadata.name] != nil, s.nextVersion)
        }
        if checkExisting && exists && !replace { return .failure("ERR Library '\(metadata.name)' already exists") }
        switch compile(loop: loop, name: metadata.name, code: code, codeStart: metadata.codeStart, version: version) {
        case .failure(let error): return .failure(Refusal("ERR \(error.message)"))
        case .success(let functions):
            return .success(FunctionLibrary(name: metadata.name, code: code, functions: functions, version: version))
        }
    }

    /// FUNCTION LOAD: the library's name, or Redis's error.
    func load(_ code: [UInt8], replace: Bool, loop: Int) -> Result<String, Refusal> {
        let library: FunctionLibrary
        switch prepare(code, loop: loop, replace: replace, checkExisting: true) {
        case .failure(let error): return .failure(error)
        case .success(let l): library = l
        }
        let error: Refusal? = state.withLock { s -> Refusal? in
            if s.libraries[library.name] != nil && !replace { return "ERR Library '\(library.name)' already exists" }
            for function in library.functions {
                if let owner = s.owners[function.name.lowercased()], owner.library != library.name {
                    return "ERR Function \(function.name) already exists"
                }
            }
            Self.unlink(&s, library.name)
            Self.link(&s, library)
            return nil
        }
        if let error {
            // The engine holds the refused code under this name now.
            threads[loop].versions[library.name] = nil
            return .failure(error)
        }
        return .success(library.name)
    }

    private static func unlink(_ s: inout State, _ name: String) {
        guard let old = s.libraries.removeValue(forKey: name) else { return }
        for function in old.functions { s.owners[function.name.lowercased()] = nil }
    }

    private static func link(_ s: inout State, _ library: FunctionLibrary) {
        s.libraries[library.name] = library
        for (index, function) in library.functions.enumerated() { s.owners[function.name.lowercased()] = (library.name, index) }
    }

    /// FUNCTION DELETE.
    func delete(_ name: String) -> Bool {
        state.withLock { s in
            guard s.libraries[name] != nil else { return false }
            Self.unlink(&s, name)
            return true
        }
    }

    /// FUNCTION FLUSH.
    public func flush() {
        state.withLock { s in
            s.libraries.removeAll()
            s.owners.removeAll()
        }
        generation.add(1, ordering: .releasing)
    }

    public enum RestorePolicy: Sendable { case append, replace, flush }

    /// FUNCTION RESTORE (and loading a snapshot): all libraries or none.
    public func restore(_ codes: [[UInt8]], policy: RestorePolicy, loop: Int) -> Result<Void, Refusal> {
        var incoming: [FunctionLibrary] = []
        var failure: Refusal?
        for code in codes {
            switch prepare(code, loop: loop, replace: false, checkExisting: false) {
            case .failure(let error): failure = error
            case .success(let library):
                if incoming.contains(where: { $0.name == library.name }) {
                    failure = "ERR Library '\(library.name)' already exists"
                } else if let clash = library.functions.first(where: { f in
                    incoming.contains { $0.functions.contains { $0.name.lowercased() == f.name.lowercased() } }
                }) {
                    failure = "ERR Function \(clash.name) already exists"
                }
                incoming.append(library)
            }
            if failure != nil { break }
        }
        if failure == nil {
            failure = state.withLock { s -> Refusal? in
                var next = policy == .flush ? State(nextVersion: s.nextVersion) : s
                for library in incoming where next.libraries[library.name] != nil {
                    guard policy == .replace else { return "ERR Library \(library.name) already exists" }
                    Self.unlink(&next, library.name)
                }
                for library in incoming {
                    if let clash = library.functions.first(where: { next.owners[$0.name.lowercased()] != nil }) {
                        return "ERR Function \(clash.name) already exists"
                    }
                }
                for library in incoming { Self.link(&next, library) }
                s = next
                return nil
            }
        }
        if let failure {
            // This engine holds refused code under these names now.
            for library in incoming { threads[loop].versions[library.name] = nil }
            return .failure(failure)
        }
        return .success(())
    }
}

/// FUNCTION (LOAD, LIST, DELETE, FLUSH, DUMP, RESTORE, STATS, KILL, HELP),
/// FCALL and FCALL_RO: Redis 7.0's functions.
///
/// A library is Lua code whose first line is `#!lua name=<library>`. FUNCTION
/// LOAD runs it once on the calling thread, where it may only call
/// redis.register_function (and redis.log); the registry of libraries is
/// shared by every thread, and each thread compiles a library into its own
/// engine when one of its functions is first called there. FCALL runs a
/// function as fn(KEYS, ARGV) exactly as EVAL runs a script (``ScriptRun``):
/// on its declared keys' shard when they share one, otherwise with every
/// shard lent to the calling thread.
public enum FunctionFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "scripting"
        // Not denyOOM as a command: Redis 7 refuses only functions without
        // `no-writes` or `allow-oom` over maxmemory (see fcall).
        r.register("fcall", arity: -3, flags: [.write, .noscript], group: g) { call in fcall(call, readOnly: false) }
        r.register("fcall_ro", arity: -3, flags: [.readonly, .noscript], group: g) { call in fcall(call, readOnly: true) }
        r.register("function", arity: -2, flags: [.noscript], group: g) { call in function(call) }
    }

    /// Arity of each subcommand, as Redis's command table gives it.
    static let subcommandArity: [String: Int] = [
        "load": -3, "list": -2, "delete": 3, "flush": -2, "dump": 2, "restore": -3, "stats": 2, "kill": 2, "help": 2,
    ]

    static func function(_ call: CommandCall) {
        let runtime = call.engine.functions
        let sub = call.args.string(1).lowercased()
        guard let arity = subcommandArity[sub] else {
            return call.reply(.error("ERR unknown subcommand '\(call.args.string(1))'. Try FUNCTION HELP."))
        }
        guard arity > 0 ? call.args.count == arity : call.args.count >= -arity else {
            return call.reply(.error("ERR wrong number of arguments for 'function|\(sub)' command"))
        }
        switch sub {
        case "load":
            var replace = false
            for i in 2..<(call.args.count - 1) {
                guard call.isArg(i, "replace") else { return call.reply(.error("ERR Unknown option given: \(call.args.string(i))")) }
                replace = true
            }
            switch runtime.load(call.args.bytes(call.args.count - 1), replace: replace, loop: call.loop.index) {
            case .success(let name): journaled(call, .bulkString(name))
            case .failure(let error): call.reply(.error(error.message))
            }
        case "list":
            list(call)
        case "delete":
            if runtime.delete(call.args.string(2)) { journaled(call, .ok) } else { call.reply(.error("ERR Library not found")) }
        case "flush":
            if call.args.count > 3 {
                return call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.string(1))'. Try FUNCTION HELP."))
            }
            guard call.args.count == 2 || call.isArg(2, "sync") || call.isArg(2, "async") else {
                return call.reply(.error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"))
            }
            runtime.flush()
            journaled(call, .ok)
        case "dump":
            call.reply(.bulk(FunctionPayload.encode(runtime.libraries.map(\.code))))
        case "restore":
            // Redis checks the count before the policy: one policy at most.
            guard call.args.count <= 4 else {
                return call.reply(.error("ERR unknown subcommand or wrong number of arguments for '\(call.args.subcommandName(1))'. Try FUNCTION HELP."))
            }
            var policy = FunctionRuntime.RestorePolicy.append
            for i in 3..<call.args.count {
                if call.isArg(i, "append") { policy = .append }
                else if call.isArg(i, "replace") { policy = .replace }
                else if call.isArg(i, "flush") { policy = .flush }
                else {
                    return call.reply(.error("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."))
                }
            }
            let codes: [[UInt8]]
            do {
                codes = try FunctionPayload.decode(call.args.bytes(2))
            } catch {
                return call.reply(.error(error.message))
            }
            switch runtime.restore(codes, policy: policy, loop: call.loop.index) {
            case .success: journaled(call, .ok)
            case .failure(let error): call.reply(.error(error.message))
            }
        case "stats":
            // Runs while busy (allowedWhileBusy): names the function past the limit.
            var running = Reply.null
            switch call.engine.scripts.slowScript() {
            case .failure(let busy)?: return call.reply(.error(busy.text))
            case .success(let slow)?:
                running = .map([
                    (.bulkString("name"), .bulkString(slow.name)),
                    (.bulkString("command"), .array(slow.command.map { .bulk($0) })),
                    (.bulkString("duration_ms"), .integer(slow.millis)),
                ])
            case nil: break
            }
            let (libraries, functions) = runtime.counts
            call.reply(.map([
                (.bulkString("running_script"), running),
                (.bulkString("engines"), .map([
                    (.bulkString("LUA"), .map([
                        (.bulkString("libraries_count"), .integer(libraries)),
                        (.bulkString("functions_count"), .integer(functions)),
                    ])),
                ])),
            ]))
        case "kill":
            // Runs while busy (allowedWhileBusy), from any thread, the function's own included.
            if let failure = call.engine.scripts.requestKill(kind: .function) {
                call.reply(.error(failure))
            } else {
                call.reply(.ok)
            }
        default:
            call.reply(.array(help.map { .simple($0) }))
        }
    }

    /// Replies after appending the command to shard 0's journal (`--appendonly`):
    /// replayed at start-up on loop 0 after the snapshot, which takes the
    /// libraries on shard 0 at the moment its journal rolls over.
    static func journaled(_ call: CommandCall, _ reply: Reply) {
        guard call.engine.journaling else { return call.reply(reply) }
        let args = (0..<call.args.count).map { call.args.bytes($0) }
        call.shardSet.hop(from: call.loop, to: 0, { shard in
            shard.journal?.append(database: 0, args)
            return 0
        }, done: { _ in call.reply(reply) })
    }

    /// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
    static func list(_ call: CommandCall) {
        var withCode = false
        var pattern: [UInt8]?
        var i = 2
        while i < call.args.count {
            if call.isArg(i, "withcode") && !withCode {
                withCode = true
            } else if call.isArg(i, "libraryname") && pattern == nil {
                guard i + 1 < call.args.count else { return call.reply(.error("ERR library name argument was not given")) }
                pattern = call.args.bytes(i + 1)
                i += 1
            } else {
                return call.reply(.error("ERR Unknown argument \(call.args.string(i))"))
            }
            i += 1
        }
        var replies: [Reply] = []
        for library in call.engine.functions.libraries {
            if let pattern {
                let name = Array(library.name.utf8)
                let matches = pattern.withUnsafeBytes { p in
                    name.withUnsafeBytes { GlobPattern.matches(pattern: p, string: $0, caseInsensitive: true) }
                }
                if !matches { continue }
            }
            var fields: [(Reply, Reply)] = [
                (.bulkString("library_name"), .bulkString(library.name)),
                (.bulkString("engine"), .bulkString("LUA")),
                (.bulkString("functions"), .array(library.functions.map { f in
                    .map([
                        (.bulkString("name"), .bulkString(f.name)),
                        (.bulkString("description"), f.description.map { .bulk($0) } ?? .null),
                        (.bulkString("flags"), .set(f.flagNames.map { .simple($0) })),
                    ])
                })),
            ]
            if withCode { fields.append((.bulkString("library_code"), .bulk(library.code))) }
            replies.append(.map(fields))
        }
        call.reply(.array(replies))
    }

    static func fcall(_ call: CommandCall, readOnly: Bool) {
        let runtime = call.engine.functions
        guard let (library, function) = runtime.lookup(call.args.string(1)) else {
            return call.reply(.error("ERR Function not found"))
        }
        guard let keyCount = call.integer(2) else { return call.reply(.error("ERR Bad number of keys provided")) }
        guard keyCount <= Int64(call.args.count - 3) else {
            return call.reply(.error("ERR Number of keys can't be greater than number of args"))
        }
        guard keyCount >= 0 else { return call.reply(.error("ERR Number of keys can't be negative")) }
        // Redis's order: a function that may write counts as a write command for
        // processCommand's checks (OOM, NOREPLICAS, READONLY), then FCALL_RO's own.
        if !function.noWrites && !function.allowOOM && call.engine.isOverMemoryLimit {
            return call.reply(.error(ScriptFamily.oomError))
        }
        if !function.noWrites && call.engine.tooFewReplicas.load(ordering: .relaxed) {
            return call.reply(.error(Engine.noReplicasError))
        }
        if !function.noWrites && call.engine.readOnlyReplica.load(ordering: .relaxed) && !call.client.isMaster {
            return call.reply(.error(Engine.readOnlyReplicaError))
        }
        if readOnly && !function.noWrites {
            return call.reply(.error("ERR Can not execute a script with write flag using *_ro command."))
        }
        let invocation = ScriptInvocation(call, firstKey: 3, keyCount: Int(keyCount))
        // The lending bookkeeping is keyed per function and library version.
        let id = "fcall:\(library.name)#\(library.version):\(function.name)"
        let reach = call.engine.scripts.reach(forFunction: id)
        let run = ScriptRun(
            call: call, sha: id, body: [], invocation: invocation, reach: reach,
            function: ScriptRun.FunctionTarget(library: library, name: function.name),
            allowsOOM: function.allowOOM, noWrites: function.noWrites)
        if let shard = invocation.singleShard, reach.takesOneShardPath {
            run.onOwningShard(shardIndex: shard)
        } else {
            run.withLentShards(declaredShard: invocation.singleShard)
        }
    }

    static let help = [
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries:",
        "    * Library name",
        "    * The engine used to run the Library",
        "    * Library description",
        "    * Functions list",
        "    * Library code (if WITHCODE is given)",
        "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
        "STATS",
        "    Return information about the current function running:",
        "    * Function name",
        "    * Command used to run the function",
        "    * Duration in MS that the function is running",
        "    If no function is running, return nil",
        "    In addition, returns a list of available engines.",
        "KILL",
        "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the libraries.",
        "    * SYNC: Synchronously flush the libraries.",
        "DUMP",
        "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
        "    control how to handle existing libraries (default APPEND):",
        "    * FLUSH: delete all existing libraries.",
        "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
        "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
        "      libraries with the new libraries (notice that even on this option there is a chance of failure",
        "      in case of functions name collision with another library).",
        "HELP",
        "    Prints this help.",
    ]
}
