import CDamselfly
import DamselflyACL
import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyTransactions
import DamselflyStorage
import DamselflyTLS
import Glibc

/// One client connection, living on one loop: it parses what arrives,
/// dispatches each command, and sends all replies of a read batch in one write.
///
/// Commands of one connection run strictly one after another: when a command
/// must hop to another shard, the connection stops parsing until its reply
/// comes back, then goes on with what is buffered.
final class Connection: SocketHandler, ReplySink, @unchecked Sendable {
    // Invariant behind @unchecked Sendable: other threads only hold the
    // reference (pub/sub registry) and post closures to `loop`; every
    // property is read and written on `loop` alone.
    let server: Server
    /// `server.engine`, kept here: a `let` of this object is read on every
    /// command without the retain a chain through `server` costs.
    let engine: Engine
    /// `engine.scripts` and the server's replica side, kept here for the
    /// same reason: dispatch asks both on every command.
    let scripts: ScriptRuntime
    let replica: ReplicationReplica
    /// The server's pause state and MONITOR feed, asked on every command: kept
    /// here so that the ask borrows them instead of retaining them.
    let clientPause: ClientPause
    let monitors: MonitorFeed
    let loop: EventLoop
    let counters: LoopCounters
    var socket = SocketID(slot: -1, generation: 0)
    let client: ClientState

    /// Receive buffer: malloc'ed so argument views stay put while a command
    /// runs; compacted only between commands.
    private var input: UnsafeMutableRawPointer
    private var inputCapacity: Int
    private var inputStart = 0
    private var inputEnd = 0
    private var parser: RESPParser
    /// The arguments being parsed. A squashed run gives each of its commands
    /// its own (``SquashSlot/arguments``), so that none is overwritten while its command is in flight.
    private var args = CommandArguments()
    var output: ReplyBuilder
    static let initialInputCapacity = 512
    static let initialOutputCapacity = 256

    /// A command is waiting for its reply from another shard.
    private var waitingForReply = false
    /// True while a handler runs, so a reply delivered during it is known to be synchronous.
    private var dispatching = false
    /// Unretained: a spec lives as long as its registry (storing it strongly
    /// cost a retain and a release per command; as `unowned(unsafe)`, binding
    /// it in ``complete(_:)`` still took them).
    private var currentSpec: Unmanaged<CommandSpec>?
    private var commandStartNanos: UInt64 = 0
    /// The clock read when the previous command of this ``processInput()``
    /// pass was answered inline (0: none): the next command's start, so that
    /// a pipeline reads the clock once per command, not twice. The next
    /// command's time then includes its parse, a few hundred nanoseconds.
    private var chainedClockNanos: UInt64 = 0

    /// The start of the command being dispatched: the chained reading when
    /// there is one, else the clock.
    @inline(__always)
    private func takeCommandClock() -> UInt64 {
        let chained = chainedClockNanos
        if chained != 0 {
            chainedClockNanos = 0
            return chained
        }
        return Clock.monotonicNanos()
    }
    /// Bumped whenever `input` is compacted or reallocated. A command that
    /// finished after a hop logs its arguments to SLOWLOG only when the
    /// count is what it was at dispatch: then its views into `input` are
    /// still the bytes it was parsed from.
    private var inputMoves = 0
    private var inputMovesAtDispatch = 0
    private(set) var isClosed = false
    /// Handing the socket to another loop: no more parsing here.
    private var migrating = false
    /// The driver refused a deferred detach: run the next command here
    /// instead of trying again (cleared once it has been dispatched).
    private var migrationRefused = false
    /// Nothing has been read yet: only the first bytes can be an HTTP request.
    private var firstInput = true
    /// Pub/sub: channels and patterns this connection is subscribed to.
    var channels: Set<[UInt8]> = []
    var patterns: Set<[UInt8]> = []
    /// Shard channels (SSUBSCRIBE); they count towards the subscribed state, not
    /// towards SUBSCRIBE's confirmation count (Redis 7 keeps two counts).
    var shardChannels: Set<[UInt8]> = []
    var subscriptionCount: Int { channels.count + patterns.count + shardChannels.count }
    /// Set by SYNC / PSYNC: this connection is a replica's link.
    var replicaLink: ReplicaLink?
    /// Runs once when the connection closes (a replica leaving the stream).
    var onClose: (() -> Void)?
    /// The TLS session of a client on a TLS port: what arrives is decrypted before
    /// the parser sees it and replies are encrypted on their way out.
    var tls: TLSSession?

    init(server: Server, loop: EventLoop, client: ClientState) {
        self.server = server
        self.engine = server.engine
        self.scripts = server.engine.scripts
        self.replica = server.replication.replica
        self.clientPause = server.clientPause
        self.monitors = server.engine.monitors
        self.loop = loop
        self.counters = server.engine.loopCounters[loop.index]
        self.client = client
        // Small to start, grown by doubling (appendInput, the reply
        // buffer's own growth) and kept once grown: an idle connection
        // costs little (Benchmarks/conn_memory.sh), a busy one reaches its
        // working size after a few commands.
        inputCapacity = Self.initialInputCapacity
        input = .allocate(byteCount: inputCapacity, alignment: 16)
        parser = RESPParser(maxBulkLength: server.config.maxBulkLen, maxMultibulkLength: server.config.maxMultibulkLen)
        output = ReplyBuilder(protocolVersion: 2, capacity: Self.initialOutputCapacity)
        let threads = server.loops.count
        squashLimit = threads > 1 ? server.config.pipelineSquash : 0
        lookaheadLimit = server.config.pipelineLookahead
        squashAcrossShards = server.config.pipelineSquashAcrossShards
        squashInOrder = !squashAcrossShards && server.config.pipelineSquashTransactions
        mayMigrate = threads > 1 && server.config.migrateConnections
        shardSet = server.engine.shardSet
        shardOwner = shardSet.ownerLoopIndex
        loopIndex = loop.index
        ownShard = shardOwner.firstIndex(of: loop.index) ?? -1
        client.checkPeer = { [weak self] in
            // Closed here as the server closes a connection: the driver's socket too.
            guard let self, !isClosed, loop.peerHasClosed(socket) else { return }
            close()
        }
    }

    deinit {
        input.deallocate()
        retiredInput?.deallocate()
        lookaheadKeys?.deallocate()
        lookaheadHashes?.deallocate()
    }

    // MARK: - SocketHandler

    func socketReceived(_ bytes: UnsafeRawBufferPointer) {
        if let tls { return receiveTLS(bytes, tls) }
        receivePlain(bytes)
    }

    /// Ciphertext in: the handshake's answers go straight back; the plaintext
    /// goes on as any client's bytes. A failed session (no or a bad client
    /// certificate, a protocol error, the peer's close_notify) closes the connection.
    private func receiveTLS(_ bytes: UnsafeRawBufferPointer, _ tls: TLSSession) {
        guard !isClosed else { return }
        var plain: [UInt8] = []
        let ok = tls.receive(bytes, into: &plain)
        var cipher: [UInt8] = []
        tls.takeCiphertext(into: &cipher)
        if !cipher.isEmpty { loop.write(socket, &cipher) }
        if tls.hasEarlyOutput && tls.isEstablished { flush() }
        if !plain.isEmpty { plain.withUnsafeBytes { receivePlain($0) } }
        if !ok { close() }
    }

    private func receivePlain(_ bytes: UnsafeRawBufferPointer) {
        counters.netInputBytes += bytes.count
        counters.readsProcessed += 1
        guard !isClosed else { return }
        if inputEnd - inputStart + heldInput.count + bytes.count > server.limits.queryBufferLimit.load(ordering: .relaxed) {
            // Redis's client-query-buffer-limit: the client is closed without a reply.
            close()
            return
        }
        if dispatching {
            // Our own command is still on the stack (a busy script served
            // its thread's sockets from its hook): its argument views point
            // into `input`, which must not move; keep the bytes aside.
            heldInput.append(contentsOf: bytes)
            return
        }
        appendInput(bytes)
        if !waitingForReply && !migrating { processInput() }
    }

    /// Bytes that arrived while this connection's own handler ran (see
    /// ``socketReceived(_:)``); appended once it returns.
    private var heldInput: [UInt8] = []

    /// The receive buffer a squashed run's keys are read from, in place, on
    /// other threads (``ReplySink/hopBatch``), once ``appendInput(_:)`` had to
    /// move the live bytes out of it while the run was out: kept, unchanged,
    /// until the run's replies are in (``finishSquashRun()``).
    private var retiredInput: UnsafeMutableRawPointer?

    func socketClosed() {
        guard !isClosed else { return }
        isClosed = true
        releaseClient()
    }

    private func appendInput(_ bytes: UnsafeRawBufferPointer) {
        if inputEnd + bytes.count > inputCapacity && squashCount > 0 && retiredInput == nil {
            // A squashed run is out (or being built) and its keys are read in
            // place in this buffer: it is neither compacted nor freed until the
            // run's replies are in. The live bytes move to a new buffer, grown
            // as below, and this one retires. (A later move in the same run
            // finds a buffer that holds none of the run's keys.)
            let live = inputEnd - inputStart
            let capacity = grownInputCapacity(live: live, adding: bytes.count)
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
            if live > 0 { fresh.copyMemory(from: input + inputStart, byteCount: live) }
            retiredInput = input
            input = fresh
            inputCapacity = capacity
            inputStart = 0
            inputEnd = live
            inputMoves &+= 1
            parserNeedsRestart()
        }
        if inputEnd + bytes.count > inputCapacity {
            // Compact first; grow if still short. Only between commands: a
            // waiting command has already copied what it needs.
            let live = inputEnd - inputStart
            if inputStart > 0 {
                if live > 0 { (input).copyMemory(from: input + inputStart, byteCount: live) }
                inputStart = 0
                inputEnd = live
                inputMoves &+= 1
                parserNeedsRestart()
            }
            if inputEnd + bytes.count > inputCapacity {
                let capacity = grownInputCapacity(live: inputEnd, adding: bytes.count)
                let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
                grown.copyMemory(from: input, byteCount: inputEnd)
                input.deallocate()
                input = grown
                inputCapacity = capacity
                inputMoves &+= 1
            }
        }
        (input + inputEnd).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        inputEnd += bytes.count
    }

    /// The capacity `input` grows to for `live` bytes and `count` more: by
    /// doubling towards a big bulk's declared length, never straight to it
    /// (a client declaring 512 MB and sending 10 bytes reserves ~nothing).
    private func grownInputCapacity(live: Int, adding count: Int) -> Int {
        var capacity = inputCapacity
        let needed = live + count
        let wanted = min(max(needed, parser.bytesWanted + live), 2 * needed)
        while capacity < wanted { capacity *= 2 }
        return capacity
    }

    /// The parser keeps offsets relative to the frame start, so moving the
    /// buffer needs nothing; kept as a hook for clarity.
    private func parserNeedsRestart() {}

    // MARK: - Commands

    private func processInput() {
        // A reading left by the last command is good only within this pass.
        defer { chainedClockNanos = 0 }
        // After QUIT nothing more is run: pipelined commands behind it are dropped, as Redis does.
        while !waitingForReply && !isHeldByPause && !isClosed && !client.closeRequested && inputStart < inputEnd {
            let view = UnsafeRawBufferPointer(start: input + inputStart, count: inputEnd - inputStart)
            if firstInput {
                switch HTTPRequest.detect(view) {
                case .notHTTP: firstInput = false
                case .incomplete: return
                case .request(let path):
                    firstInput = false
                    inputStart = inputEnd
                    return serveHTTP(path)
                }
            }
            let outcome: RESPParseOutcome
            var parsedAheadSpec: CommandSpec?? = nil
            if parsedAheadBytes > 0 && parsedAheadMoves == inputMoves {
                outcome = .command(consumed: parsedAheadBytes)
                parsedAheadSpec = .some(parsedAheadCommand)
                parsedAheadBytes = 0
                parsedAheadCommand = nil
            } else {
                parsedAheadBytes = 0
                // Borrowed, not retained: `args` is this connection's, swapped only
                // between commands (a squashed run's slots), never during a parse.
                outcome = Unmanaged.passUnretained(args)._withUnsafeGuaranteedRef { parser.parse(view, into: $0) }
                if case .command(let consumed) = outcome {
                    takeLookahead()
                    lookAheadIfPipelined(after: consumed)
                }
            }
            switch outcome {
            case .needMoreData:
                if squashBuilding { endSquashRun() }
                if !waitingForReply { flush() }
                return
            case .skip(let consumed):
                inputStart += consumed
            case .command(let consumed):
                // One lookup serves the migration check and the dispatch.
                // Bound once, not optional: each `if let` of an optional spec
                // took a retain and a release (five pairs per command).
                guard let spec = parsedAheadSpec ?? engine.registry.lookup(args[0]) else {
                    if squashBuilding {
                        // Ends the run; refused once its replies are in.
                        endSquashRun(before: consumed, parsedAs: nil)
                        continue
                    }
                    inputStart += consumed
                    // Inside a busy script's hook: answered at once (see below).
                    if loop.isServingWhileBusy {
                        dispatch(nil)
                        continue
                    }
                    commandShard = -1
                    commandBytes = consumed
                    migrationRefused = false
                    dispatchAlone(nil)
                    continue
                }
                if squashBuilding {
                    // A squashed run takes the commands that qualify; the first
                    // that does not ends it and, left unconsumed, is parsed
                    // again once the run's replies are in.
                    guard squashCount < squashLimit, commandMaySquash(spec), squashRunTakes(),
                          squashedMigrationTarget() == nil else {
                        endSquashRun(before: consumed, parsedAs: spec)
                        continue
                    }
                    inputStart += consumed
                    addToSquashRun(spec)
                    continue
                }
                if loop.isServingWhileBusy {
                    // Inside a busy script's hook (EventLoop.serveClientsWhileBusy):
                    // no migration; a command Redis allows while busy that
                    // would touch this thread's shards waits, unparsed, for
                    // the script to end; everything else is answered now
                    // (BUSY, from dispatch, or one that touches no shard).
                    if ScriptRuntime.allowedWhileBusy(spec.name, args),
                       !ScriptRuntime.runsInsideBusyScript(spec.name, args) {
                        resumeAfterBusyScript()
                        return
                    }
                    inputStart += consumed
                    dispatch(spec)
                    continue
                }
                if clientPause.mayBeActive, holdsForPause(spec) {
                    // Left unconsumed: parsed again when the pause ends.
                    flush()
                    isHeldByPause = true
                    clientPause.park(self)
                    return
                }
                commandShard = -1
                if let target = migrationTarget(spec) {
                    // Leave the command unconsumed: the new loop parses it again.
                    if migrate(to: target) { return }
                }
                inputStart += consumed
                commandBytes = consumed
                migrationRefused = false
                if squashLimit > 1, inputStart < inputEnd, spec.isPlainOneKey, squashRunMayStart(),
                   commandMaySquash(spec), squashRunAllowedNow() {
                    // More pipelined bytes follow: start a squashed run with this command.
                    squashBuilding = true
                    squashRunMayMigrate = mayMigrate && tls == nil && client.tracking == nil && client.watchToken == nil
                    loop.beginPostBatch()
                    if squashInOrder {
                        squashRunInOrder = true
                        squashLocalShard = -1
                        squashHopBatch.beginRunInOrder(from: loop)
                    }
                    addToSquashRun(spec)
                    continue
                }
                dispatchAlone(spec)
            case .protocolError(let message):
                if squashBuilding {
                    // The run's replies go first; the bad bytes are parsed again after them.
                    endSquashRun()
                    continue
                }
                output.error("ERR " + message)
                counters.countError("ERR")
                flush()
                close()
                return
            }
        }
        if squashBuilding { endSquashRun() }
        // Not while a command waits: its argument views still point at these bytes.
        if inputStart == inputEnd && !waitingForReply {
            inputStart = 0
            inputEnd = 0
            if lookaheadEnd != 0 {
                // Keys read ahead in these bytes are all parsed; new bytes will land where they were.
                lookaheadEnd = 0
                lookaheadCount = 0
                lookaheadNext = 0
            }
        }
        if !waitingForReply { flush() }
        if client.closeRequested && !waitingForReply { close() }
    }

    /// Stops reading input inside a busy script's hook and picks it up again
    /// once the loop goes round after the script (deferred tasks never run
    /// from the hook), so what waits is answered in order.
    private func resumeAfterBusyScript() {
        flush()
        guard !resumeScheduled else { return }
        resumeScheduled = true
        loop.defer_ { [self] in
            resumeScheduled = false
            if !waitingForReply && !migrating && !isClosed { processInput() }
        }
    }

    /// A resume after a busy script is already scheduled.
    private var resumeScheduled = false

    /// The bytes of the command in flight, still part of the query buffer as Redis counts it.
    private var commandBytes = 0

    /// CLIENT LIST's `qbuf`: unparsed input plus the command running now (Redis trims its
    /// query buffer only after the command), and `qbuf-free`.
    var queryBuffer: (used: Int, free: Int) {
        (inputEnd - inputStart + (waitingForReply ? commandBytes : 0), inputCapacity - inputEnd)
    }

    // MARK: - CLIENT PAUSE

    /// Held by CLIENT PAUSE (see ``ClientPause``): the next command waits, unparsed, in `input`.
    private(set) var isHeldByPause = false

    /// Whether the pause in force holds this command: never a replica's link; never a
    /// command refused before it could run anyway (unknown, wrong arity, before AUTH),
    /// whose error Redis sends at once.
    private func holdsForPause(_ spec: CommandSpec) -> Bool {
        replicaLink == nil && spec.acceptsArgumentCount(args.count) && (client.authenticated || spec.flags.contains(.noAuth))
            && clientPause.holds(spec, args, client: client, engine: engine)
    }

    /// The pause ended (on this loop): run what waits.
    func resumeAfterPause() {
        guard isHeldByPause else { return }
        isHeldByPause = false
        if !waitingForReply && !migrating && !isClosed { processInput() }
    }

    /// An EXEC refused before it could run ends the transaction, MULTI or
    /// not, as Redis's `execCommandAbort` does: queue and WATCHes dropped,
    /// the reason given under EXECABORT.
    private func abortExec(_ reason: String) {
        client.multiQueue = nil
        client.multiFailed = false
        MultiFamily.unwatch(client, shardSet: engine.shardSet)
        emitError("EXECABORT Transaction discarded because of: " + reason)
    }

    /// A command dispatched on its own (not in a squashed run): its reply
    /// framed, and sent once it is in, unless more pipelined commands follow.
    @inline(__always)
    private func dispatchAlone(_ spec: CommandSpec?) {
        beginReply(spec)
        dispatch(spec)
        if !waitingForReply {
            endReply()
            releaseHeldTrackingMessages()
        }
        // A long pipeline's replies leave in pieces, so the output limit sees them.
        if output.buffer.count >= 1 << 16 && !waitingForReply { flush() }
    }

    /// Runs the parsed command; `spec` is its registry entry (nil: unknown).
    private func dispatch(_ spec: CommandSpec?) {
        let startNanos = takeCommandClock()
        client.lastCommandAtNanos = startNanos
        guard let spec else {
            var text = "ERR unknown command '\(String(args.string(0).prefix(128)))', with args beginning with: "
            var listed = ""
            var i = 1
            while i < args.count && listed.utf8.count < 128 {
                let room = 128 - listed.utf8.count
                listed += "'" + String(decoding: args.bytes(i).prefix(room), as: UTF8.self) + "' "
                i += 1
            }
            text += listed
            if client.multiQueue != nil { client.multiFailed = true }
            emitError(text)
            return
        }
        client.noteCommand(spec, subcommandName: self.args.count > 1 ? spec.fullName(subcommand: self.args[1]) : nil)
        guard spec.acceptsArgumentCount(args.count) else {
            countRejected(spec)
            if spec.name == "exec" { return abortExec("wrong number of arguments for 'exec' command") }
            if client.multiQueue != nil { client.multiFailed = true }
            emitError("ERR wrong number of arguments for '\(spec.name)' command")
            return
        }
        if let subcommand = client.lastSubcommandName,
           let text = spec.subcommandArityError(fullName: subcommand, argumentCount: args.count) {
            countRejected(spec)
            if client.multiQueue != nil { client.multiFailed = true }
            emitError(text)
            return
        }
        if !client.authenticated && !spec.flags.contains(.noAuth) {
            countRejected(spec)
            emitError("NOAUTH Authentication required.")
            return
        }
        // The first test reads the flag without binding (and retaining) the user.
        if client.user?.unrestricted.load(ordering: .relaxed) == false, let user = client.user,
           let refusal = engine.aclRefusal(client, user, spec, args, context: client.multiQueue != nil ? .multi : .toplevel) {
            // A restricted user (the default user never gets here: one flag load).
            countRejected(spec)
            let text = AclFamily.noPermission(refusal)
            if spec.name == "exec" { return abortExec(text) }
            if client.multiQueue != nil { client.multiFailed = true }
            emitError(text)
            return
        }
        if spec.flags.contains(.denyOOM) && engine.isOverMemoryLimit {
            countRejected(spec)
            if client.multiQueue != nil { client.multiFailed = true }
            emitError("OOM command not allowed when used memory > 'maxmemory'.")
            return
        }
        if subscriptionCount > 0 && client.protocolVersion == 2 && !PubSubFamily.allowedWhileSubscribed.contains(spec.name) {
            let text = "Can't execute '\(spec.name)': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            if spec.name == "exec" { return abortExec(text) }
            emitError("ERR " + text)
            return
        }
        if scripts.mayBeBusy, let busy = scripts.busyError(), !ScriptRuntime.allowedWhileBusy(spec.name, args) {
            // A script has run past lua_time_limit (Redis's BUSY): on another
            // thread, or on this one, whose hook is serving us now.
            countRejected(spec)
            if spec.name == "exec" { return abortExec(busy) }
            if client.multiQueue != nil { client.multiFailed = true }
            emitError(busy)
            return
        }
        if engine.tooFewReplicas.load(ordering: .relaxed) && spec.writesAsRedis {
            countRejected(spec)
            if client.multiQueue != nil { client.multiFailed = true }
            emitError(Engine.noReplicasError)
            return
        }
        if replica.isReplica.load(ordering: .relaxed), let refusal = replica.refusal(spec) {
            // A replica: READONLY for writes, MASTERDOWN while the link is down (replica-serve-stale-data no).
            countRejected(spec)
            if client.multiQueue != nil { client.multiFailed = true }
            emitError(refusal)
            return
        }
        if client.multiQueue != nil && spec.flags.contains(.noMulti) {
            client.multiFailed = true
            emitError("ERR Command not allowed inside a transaction")
            return
        }
        if client.multiQueue != nil && !spec.runsAtOnceInMulti {
            client.multiQueue!.append(QueuedCommand(spec: spec, arguments: (0..<args.count).map { args.bytes($0) }))
            output.protocolVersion = client.protocolVersion
            output.simpleString("QUEUED")
            return
        }
        if monitors.isActive && !spec.flags.contains(.admin) { feedMonitors(spec) }
        currentSpec = Unmanaged.passUnretained(spec)
        commandStartNanos = startNanos
        inputMovesAtDispatch = inputMoves
        waitingForReply = true
        runHandler(spec, sink: self)
        if waitingForReply && spec.flags.contains(.blocking) {
            // Parked (or about to): replies to the commands before it go out now.
            flush()
        }
    }

    // MARK: - Look-ahead

    /// The shortest frame with a key ("*2\r\n$1\r\nx\r\n$1\r\nk\r\n"): fewer bytes
    /// after a command are no pipeline to look ahead in.
    static let shortestKeyedFrame = 22
    /// `--pipeline_lookahead`: the most pipelined commands looked at in one go
    /// (16 by default, as Redis 8 prefetches for 16 commands; 0: off).
    private let lookaheadLimit: Int
    /// Input offset up to which pipelined commands have been looked at, good
    /// while `inputMoves` is still `lookaheadMoves` (reset with the buffer).
    private var lookaheadEnd = 0
    private var lookaheadMoves = 0
    /// The keys looked at and not yet parsed, in input order
    /// (`lookaheadKeys[lookaheadNext..<lookaheadCount]`), and the hashes of
    /// those on this loop's shard, for their lookups' later stages. Both
    /// hold `lookaheadLimit + 1` (the command just parsed and those behind it),
    /// made by the first look-ahead (a connection that never pipelines costs
    /// nothing more) and kept for the connection's life.
    private var lookaheadKeys: UnsafeMutablePointer<LookaheadKey>?
    private var lookaheadCount = 0
    private var lookaheadNext = 0
    private var lookaheadHashes: UnsafeMutablePointer<UInt64>?

    /// A pipelined command's argument 1 seen ahead of its parse: where its
    /// bytes lie in `input`, and its hash and shard, handed to the command's
    /// arguments when it is parsed instead of worked out again.
    private struct LookaheadKey {
        let address: UnsafeRawPointer
        let count: Int
        let hash: UInt64
        let shard: Int
    }

    /// The command just parsed took `consumed` bytes: when more wait behind
    /// it that no look-ahead has walked yet, look ahead from there. Pipeline
    /// 1 pays this comparison only: the parse tells where the command ends.
    @inline(__always)
    private func lookAheadIfPipelined(after consumed: Int) {
        let next = inputStart + consumed
        guard inputEnd - next >= Connection.shortestKeyedFrame, lookaheadLimit > 0,
              lookaheadMoves != inputMoves || lookaheadEnd <= next,
              // Inside a busy script's hook this thread's shards are the script's.
              !loop.isServingWhileBusy else { return }
        if lookaheadPause > 0 {
            lookaheadPause -= 1
            return
        }
        lookAhead(from: next)
    }

    /// Pipelined commands left without a look-ahead after one found every key
    /// the same (a producer filling one queue, a worker on one counter): that
    /// key is in cache, and the walk would cost some 10 % of each command for
    /// nothing. Looked at again after these many, in case the keys change.
    static let lookaheadPauseCommands = 256
    private var lookaheadPause = 0

    /// Starts the memory reads of the lookups of the command just parsed and
    /// of the pipelined commands waiting behind it, from `start` (up to
    /// `lookaheadLimit` of them), each stage for the whole batch before the
    /// next (``Database/BucketTable/prefetchBucket(hash:)``): the cache misses of a batch
    /// of random keys overlap instead of each command waiting for its own in
    /// turn. Keys on other loops' shards are left to them (``KeyHopBatch``
    /// does the same for a squashed run), and so are those of a second shard
    /// of this loop's (with more shards than threads), which go unhelped.
    private func lookAhead(from start: Int) {
        if lookaheadKeys == nil {
            lookaheadKeys = .allocate(capacity: lookaheadLimit + 1)
            lookaheadHashes = .allocate(capacity: lookaheadLimit + 1)
        }
        let keys = lookaheadKeys.unsafelyUnwrapped
        let hashes = lookaheadHashes.unsafelyUnwrapped
        // Everything walked before lies before `start`: parsed already.
        lookaheadCount = 0
        lookaheadNext = 0
        lookaheadMoves = inputMoves
        // This loop's shard (the first, with more shards than threads: keys
        // of its others go unhelped) and its database, its table lent for
        // the whole walk: bound once, as each read of a property cost a
        // retain and a release per key.
        let shardSet = self.shardSet
        let local = ownShard
        var localCount = 0
        var at = start
        var firstHash: UInt64 = 0
        var sameKeys = 0
        func walk(_ table: Database.BucketTable?) {
            @inline(__always)
            func note(_ key: UnsafeRawBufferPointer, hash: UInt64, shard: Int) {
                if self.lookaheadCount == 0 { firstHash = hash }
                if hash == firstHash { sameKeys += 1 }
                keys[self.lookaheadCount] = LookaheadKey(address: key.baseAddress!, count: key.count, hash: hash, shard: shard)
                self.lookaheadCount += 1
                guard shard == local, let table else { return }
                table.prefetchBucket(hash: hash)
                hashes[localCount] = hash
                localCount += 1
            }
            let args = self.args
            // The command just parsed: its lookup overlaps the walk of the others.
            if args.count > 1, args[1].baseAddress != nil {
                let key = args[1]
                let hash = args.keyHash(1)
                if let shard = shardSet.shardIndexWithoutPlacing(of: key, hash: hash) {
                    args.remember(shard: shard, of: 1)
                    note(key, hash: hash, shard: shard)
                    self.lookaheadNext = 1
                }
            }
            let view = UnsafeRawBufferPointer(start: self.input, count: self.inputEnd)
            var looked = 0
            while looked < self.lookaheadLimit, let command = RESPLookahead.command(in: view, at: at) {
                if let key = command.key, key.baseAddress != nil {
                    let hash = KeyHash.hash(key)
                    if let shard = shardSet.shardIndexWithoutPlacing(of: key, hash: hash) {
                        note(key, hash: hash, shard: shard)
                    }
                }
                at = command.end
                looked += 1
            }
        }
        let database = local >= 0 ? shardSet.shards[local].database(client.database) : nil
        if let database {
            database.withBucketTable { walk($0) }
        } else {
            walk(nil)
        }
        lookaheadEnd = at
        if lookaheadCount > 1 && sameKeys == lookaheadCount { lookaheadPause = Connection.lookaheadPauseCommands }
        database?.prefetchEntriesAndValues(UnsafeBufferPointer(start: hashes, count: localCount))
        let stats = shardSet.stats[loopIndex]
        stats.lookaheadKeys.addOwned(lookaheadCount)
        stats.prefetchedKeys.addOwned(localCount)
    }

    /// The command just parsed: when its argument 1 was looked at ahead
    /// (the same bytes, in a buffer that has not moved), its hash and shard
    /// are handed to the arguments.
    @inline(__always)
    private func takeLookahead() {
        guard lookaheadNext < lookaheadCount else { return }
        guard lookaheadMoves == inputMoves, args.count > 1, let address = args[1].baseAddress else {
            lookaheadCount = 0
            lookaheadNext = 0
            return
        }
        while lookaheadNext < lookaheadCount {
            let key = lookaheadKeys.unsafelyUnwrapped[lookaheadNext]
            if key.address > address { return }
            lookaheadNext += 1
            if key.address == address && key.count == args[1].count {
                args.remember(hash: key.hash, of: 1)
                args.remember(shard: key.shard, of: 1)
                return
            }
        }
    }

    // MARK: - Pipeline squashing

    /// `--pipeline_squash`: the most commands one squashed run holds (0 or 1: off).
    /// Off with a single loop, where every shard is this loop's and runs inline anyway.
    private let squashLimit: Int
    /// `--pipeline_squash_across_shards`: a run may hold commands of different
    /// shards. Off (the default), a run holds one shard's commands only: they
    /// run there in the order sent, and the next command, on another shard, is
    /// dispatched only once all of them have answered, so no client can see
    /// a pipeline's effects out of order, as with Redis.
    private let squashAcrossShards: Bool
    /// The shard of the run's commands when runs hold one shard's (see above).
    private var squashShard = -1
    /// `--pipeline_squash_transactions`: a run of another loop's shard also
    /// takes this loop's shard's commands between them, and runs in order as
    /// one transaction over both (``KeyHopBatch``, "In order over two shards").
    private let squashInOrder: Bool
    /// The run being built is one in order; its shard of this loop (-1: none yet).
    private var squashRunInOrder = false
    private var squashLocalShard = -1
    /// The engine's shard set and this loop's index, kept here for the
    /// per-command shard checks (read through `engine` and `loop`, each cost
    /// a retain and a release around the calls that use them).
    private let shardSet: ShardSet
    private let loopIndex: Int
    /// `ShardSet.ownerLoopIndex`: which loop owns each shard.
    private let shardOwner: [Int]
    /// The first shard this loop owns (-1: none), whose keys the look-ahead helps.
    private let ownShard: Int
    /// The command that ended a squashed run, parsed into `args` and left
    /// unconsumed (its length, above 0 while it waits; its spec; `inputMoves`
    /// then): taken as it is once the run's replies are in, instead of parsed
    /// and looked up again, unless the input buffer moved meanwhile (its
    /// argument views would point at the old bytes).
    private var parsedAheadBytes = 0
    private var parsedAheadCommand: CommandSpec?
    private var parsedAheadMoves = 0
    /// The clock reading that starts the commands of the run being built (0: none yet).
    private var squashRunClock: UInt64 = 0
    /// A squashed run is being built: its commands are dispatched without
    /// waiting for each other's replies, and what they post to other loops is
    /// held by the loop's post batch.
    private var squashBuilding = false
    /// The run's slots in use (`squashSlots[0..<squashCount]`), in command order.
    private var squashCount = 0
    /// Slots of the run still without their reply.
    private var squashPending = 0
    /// Slot objects, kept for the connection's life and reused by every run.
    private var squashSlots: [SquashSlot] = []
    /// What a run's commands for another loop's shard travel in, together
    /// (``SquashSlot/hopBatch``): made with the first slot, reused by every run.
    private lazy var squashHopBatch = KeyHopBatch(shardSet: shardSet, lookahead: lookaheadLimit > 0)

    /// Whether the command just parsed may be dispatched in a squashed run,
    /// as far as the command itself goes: one key at position 1 (its shard is
    /// known, and every path its handler takes ends on that shard), nothing
    /// that changes connection state or blocks (``CommandSpec/isPlainOneKey``),
    /// and it would pass every check of ``dispatch(_:)`` with no reply of its
    /// own. Anything else ends the run and is dispatched alone, as without
    /// squashing. The rest, the connection's and the server's state, is
    /// checked once per run (``squashRunAllowedNow()``).
    @inline(__always)
    private func commandMaySquash(_ spec: CommandSpec) -> Bool {
        guard spec.isPlainOneKey, args.count > 1, spec.acceptsArgumentCount(args.count) else { return false }
        if spec.flags.contains(.denyOOM) && engine.isOverMemoryLimit { return false }
        if spec.writesAsRedis && engine.tooFewReplicas.load(ordering: .relaxed) { return false }
        return true
    }

    /// Whether a run may start: the connection is in the plain state (no
    /// MULTI, subscription, CLIENT REPLY OFF/SKIP, MONITOR, restricted user,
    /// busy script's hook) and nothing is on that a reordering of different
    /// shards' effects could show (client tracking, keyspace notifications,
    /// CLIENT PAUSE, a busy script, replica mode). Once per run, not per
    /// command: a run's commands (``commandMaySquash(_:)``) change none of
    /// it, and what another thread changes meanwhile might as well have
    /// changed just after a check of each command.
    private func squashRunAllowedNow() -> Bool {
        guard client.authenticated, client.multiQueue == nil, subscriptionCount == 0, replicaLink == nil,
              !repliesOff, !skipNextReply, !isMonitoring, !loop.isServingWhileBusy
        else { return false }
        if let user = client.user, !user.unrestricted.load(ordering: .relaxed) { return false }
        let shardSet = self.shardSet
        return !shardSet.tracking.isActive && shardSet.keyspaceEvents.flags.load(ordering: .relaxed) == 0
            && !clientPause.mayBeActive && (!scripts.mayBeBusy || scripts.busyError() == nil)
            && !replica.isReplica.load(ordering: .relaxed)
    }

    /// Whether the command just parsed (one key at position 1:
    /// ``CommandSpec/isPlainOneKey``) may start a run as far as shards go:
    /// across shards, always; otherwise only when its shard belongs to
    /// another loop (a local command runs inline at once: there is no round
    /// trip to save), which the run's later commands must then share.
    private func squashRunMayStart() -> Bool {
        if squashAcrossShards { return true }
        guard args.count > 1 else { return false }
        let shard = commandShard >= 0 ? commandShard : args.keyShard(1, in: shardSet)
        guard shardOwner[shard] != loopIndex else { return false }
        squashShard = shard
        return true
    }

    /// Whether the command just parsed (``commandMaySquash(_:)`` held) joins
    /// the run being built as far as shards go: across shards, always;
    /// otherwise when its key is on the run's shard.
    /// Leaves the key's shard in `commandShard` for the migration check that follows.
    @inline(__always)
    private func squashRunTakes() -> Bool {
        if squashAcrossShards { commandShard = -1; return true }
        commandShard = args.keyShard(1, in: shardSet)
        if commandShard == squashShard { return true }
        // In order: this loop's commands (of one of its shards) join too.
        guard squashRunInOrder, shardOwner[commandShard] == loopIndex,
              squashLocalShard < 0 || squashLocalShard == commandShard else { return false }
        squashLocalShard = commandShard
        return true
    }

    /// Runs the handler of a command that joins the squashed run (``commandMaySquash(_:)``
    /// held): its reply goes to its slot and is written, in order, when the run ends.
    private func addToSquashRun(_ spec: CommandSpec) {
        client.noteCommand(spec, subcommandName: nil)
        if monitors.isActive { feedMonitors(spec) }
        if squashCount == squashSlots.count {
            squashSlots.append(SquashSlot(index: squashCount, hopBatch: squashHopBatch))
        }
        let slot = squashSlots[squashCount]
        squashCount += 1
        squashPending += 1
        // One reading starts every command of the run: they leave within
        // a microsecond or two of each other, and none waits for another.
        if squashRunClock == 0 { squashRunClock = takeCommandClock() }
        client.lastCommandAtNanos = slot.start(self, spec, inputMoves: inputMoves, now: squashRunClock)
        if squashRunInOrder { slot.hopBatch?.currentSink = slot }
        runHandler(spec, sink: slot)
        // The next command is parsed into other arguments (the slot's spare
        // object, swapped with these): this one's stay as they are.
        swap(&args, &slot.arguments)
    }

    /// Closes the run being built before the command just parsed (`consumed`
    /// bytes, `spec` nil when unknown), which stays unconsumed: once the
    /// run's replies are in it is taken as parsed, unless the input buffer
    /// moved meanwhile (then it is parsed again).
    @inline(__always)
    private func endSquashRun(before consumed: Int, parsedAs spec: CommandSpec?) {
        parsedAheadBytes = consumed
        parsedAheadCommand = spec
        parsedAheadMoves = inputMoves
        endSquashRun()
    }

    /// Closes the run being built: what its commands posted to other loops
    /// leaves now, one message per loop; the connection waits for the replies
    /// still out, or writes them all at once when every one is in.
    private func endSquashRun() {
        squashBuilding = false
        squashRunClock = 0
        if squashRunInOrder {
            squashRunInOrder = false
            squashHopBatch.endRunInOrder(from: loop)
        }
        loop.endPostBatch()
        if squashPending > 0 {
            waitingForReply = true
        } else {
            finishSquashRun()
        }
    }

    /// A slot's reply (during its handler, or later from another loop).
    fileprivate func squashSlotDone() {
        squashPending -= 1
        guard squashPending == 0, !squashBuilding, waitingForReply else { return }
        waitingForReply = false
        finishSquashRun()
        // The last reply came from another loop: pick up where we left off.
        processInput()
    }

    /// Every reply of the run is in: each command is counted and answered in
    /// the order it arrived.
    private func finishSquashRun() {
        let count = squashCount
        squashCount = 0
        let protocolVersion = client.protocolVersion
        for i in 0..<count {
            let slot = squashSlots[i]
            let (spec, reply, elapsed) = slot.finish()
            // Each command's own time, dispatch to reply, not the wait for the run's slowest.
            spec._withUnsafeGuaranteedRef { spec in
                account(spec, reply, elapsed: elapsed, commandName: spec.name,
                        args: slot.arguments, argsValid: inputMoves == slot.inputMovesAtStart)
            }
            if !isClosed {
                output.protocolVersion = protocolVersion
                reply.encode(into: &output)
            }
        }
        if count > 1 {
            let stats = shardSet.stats[loopIndex]
            stats.squashedBatches.addOwned(1)
            stats.squashedCommands.addOwned(count)
        }
        releaseHeldTrackingMessages()
        // As between single commands: a long pipeline's replies leave in pieces.
        if output.buffer.count >= 1 << 16 { flush() }
        // Nothing reads the run's keys in place any more.
        if let retired = retiredInput {
            retired.deallocate()
            retiredInput = nil
        }
    }

    /// Calls the handler with `sink` taking its reply; bytes that arrived while
    /// it ran (a busy script's hook served this socket) are appended after it.
    @inline(__always)
    private func runHandler(_ spec: CommandSpec, sink: ReplySink) {
        dispatching = true
        spec.handler(CommandCall(args: args, client: client, engine: engine, spec: spec, sink: sink))
        dispatching = false
        if !heldInput.isEmpty && !isClosed {
            heldInput.withUnsafeBytes { appendInput($0) }
            heldInput.removeAll()
        }
    }

    // MARK: - Connection migration

    /// `--migrate_connections`: a blocking pop whose keys all live on one
    /// shard owned by another loop moves this connection to that loop first,
    /// so a worker consuming one queue is served inline from then on.
    ///
    /// Any other command moves the connection once ``Connection/affinityStreak``
    /// commands in a row had all their keys on one such shard (EVAL/FCALL by
    /// their declared keys): a client working one key or one queue ends up
    /// inline too (Sidekiq's scheduler on `schedule`, a producer filling one
    /// queue), while a client spreading its keys over shards never moves.
    private func migrationTarget(_ spec: CommandSpec) -> EventLoop? {
        guard mayMigrate, !migrationRefused, spec.acceptsArgumentCount(args.count) else { return nil }
        let owner: Int
        if spec.isPlainOneKey && args.count > 1 {
            // One key at position 1, most commands: no walk over key positions.
            // A squashed run's check may have worked it out already.
            owner = commandShard >= 0 ? commandShard : args.keyShard(1, in: shardSet)
        } else {
            // The walk only for a connection that could move at all.
            guard connectionMayMigrate(), let keysOwner = keysShard(spec) else { return nil }
            owner = keysOwner
        }
        commandShard = owner
        // The connection's own shard, half the commands of random keys at two
        // threads: no reason to move, whatever the connection's state, so the
        // state is checked only for a key elsewhere.
        guard shardOwner[owner] != loopIndex else { foreignStreak = 0; return nil }
        guard connectionMayMigrate() else { return nil }
        if spec.flags.contains(.blocking) { return shardSet.shards[owner].loop }
        return countForeignStreak(owner)
    }

    /// The one shard every key of the command lives on (table positions, or
    /// EVAL/FCALL's declared keys); nil when keyless, or when the keys are
    /// spread (which also ends the streak).
    private func keysShard(_ spec: CommandSpec) -> Int? {
        guard let keys = keyPositions(spec) else { return nil }
        var owner: Int? = nil
        for i in keys {
            let shard = args.keyShard(i, in: shardSet)
            if owner == nil { owner = shard } else if owner != shard { foreignStreak = 0; return nil }
        }
        return owner
    }

    /// ``migrationTarget(_:)``'s checks of the connection itself: a plain
    /// client, not in MULTI, subscribed, monitoring, tracking or watching,
    /// not on TLS, authenticated, not waiting for a reply.
    @inline(__always)
    private func connectionMayMigrate() -> Bool {
        !isClosed && client.multiQueue == nil && subscriptionCount == 0 && !isMonitoring && tls == nil
            && client.tracking == nil && client.watchToken == nil && client.authenticated && !waitingForReply
    }

    /// One more keyed command in a row on `owner`, another loop's shard: that
    /// loop once the streak reaches ``Connection/affinityStreak``.
    @inline(__always)
    private func countForeignStreak(_ owner: Int) -> EventLoop? {
        if owner == streakShard { foreignStreak += 1 } else { streakShard = owner; foreignStreak = 1 }
        return foreignStreak >= Connection.affinityStreak ? shardSet.shards[owner].loop : nil
    }

    /// ``migrationTarget(_:)`` for a command joining a squashed run: a plain
    /// one-key command (``commandMaySquash(_:)``) whose shard ``squashRunTakes()``
    /// left in `commandShard`, on a connection whose own checks were made
    /// once, when the run began (`squashRunMayMigrate`; nothing in a run
    /// changes them): only the streak is counted. Some 200 instructions less
    /// per squashed command than the whole check.
    @inline(__always)
    private func squashedMigrationTarget() -> EventLoop? {
        guard squashRunMayMigrate else { return nil }
        let owner = commandShard >= 0 ? commandShard : args.keyShard(1, in: shardSet)
        commandShard = owner
        guard shardOwner[owner] != loopIndex else { foreignStreak = 0; return nil }
        return countForeignStreak(owner)
    }

    /// Whether a command of the run being built may move the connection, as
    /// far as the connection goes (``migrationTarget(_:)``'s checks that a
    /// run's commands cannot change); set when the run begins.
    private var squashRunMayMigrate = false

    /// Commands in a row on one other thread's shard before the connection moves there.
    static let affinityStreak = 16
    /// Consecutive keyed commands whose keys all lived on `streakShard`, a
    /// shard of another loop (see ``migrationTarget(_:)``).
    private var foreignStreak = 0
    private var streakShard = -1
    /// More than one thread and `--migrate_connections`: fixed at start-up.
    private let mayMigrate: Bool
    /// The shard of the command being dispatched when ``migrationTarget(_:)``
    /// (or, in a squashed run, ``squashRunTakes()``) worked it out (all its
    /// keys on one shard), else -1: the other reuses it instead of hashing the
    /// key to a shard again. Reset to -1 before each command's checks.
    private var commandShard = -1

    /// Where the command's keys are: the table's fixed positions, or the
    /// declared keys of EVAL/FCALL (`name body numkeys key...`); nil when keyless.
    private func keyPositions(_ spec: CommandSpec) -> StrideTo<Int>? {
        if spec.firstKey > 0 {
            let last = spec.lastKey < 0 ? args.count + spec.lastKey : min(spec.lastKey, args.count - 1)
            guard spec.firstKey <= last else { return nil }
            return stride(from: spec.firstKey, to: last + 1, by: max(spec.keyStep, 1))
        }
        if spec.name == "xread" || spec.name == "xreadgroup" { return streamReadKeyPositions() }
        guard Connection.declaredKeyCommands.contains(spec.name), args.count > 3,
              let count = Int(args.string(2)), count > 0, count <= args.count - 3 else { return nil }
        return stride(from: 3, to: 3 + count, by: 1)
    }

    private static let declaredKeyCommands: Set<String> = ["eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"]

    /// XREAD / XREADGROUP name their keys after STREAMS (the first half of
    /// what follows), found by skipping the options as Redis's `xreadGetKeys`
    /// does: a consumer blocking on streams of one shard moves there, as a
    /// blocking pop does. Nil when the arguments do not parse.
    private func streamReadKeyPositions() -> StrideTo<Int>? {
        var i = 1
        while i < args.count {
            if args.equalsASCIICaseInsensitive(i, "block") || args.equalsASCIICaseInsensitive(i, "count") {
                i += 2
            } else if args.equalsASCIICaseInsensitive(i, "group") {
                i += 3
            } else if args.equalsASCIICaseInsensitive(i, "noack") {
                i += 1
            } else if args.equalsASCIICaseInsensitive(i, "streams") {
                let rest = args.count - i - 1
                guard rest > 0, rest % 2 == 0 else { return nil }
                return stride(from: i + 1, to: i + 1 + rest / 2, by: 1)
            } else {
                return nil
            }
        }
        return nil
    }

    /// Detaches the socket here and re-creates the connection on `target`
    /// with the bytes not yet run. False when the socket cannot move now.
    ///
    /// The replies of the commands before the migrating one are written
    /// first; the driver hands the fd over only once they are sent (and, on
    /// io_uring, once the multishot receive has posted its final CQE). Bytes
    /// that arrive meanwhile are appended to `input` and travel with it.
    private func migrate(to target: EventLoop) -> Bool {
        migrating = true
        if loop.hasSyncHook && !output.isEmpty {
            // appendfsync always: those replies may leave only after this
            // iteration's fsync, so the socket moves after them, not before
            // (a write after the detach finished would be dropped).
            loop.whenDurable { [self] in
                writeOutput()
                if !isClosed && !startDetach(to: target) {
                    migrating = false
                    migrationRefused = true
                    processInput()
                }
            }
            return true
        }
        flush()
        if startDetach(to: target) { return true }
        migrating = false
        return false
    }

    private func startDetach(to target: EventLoop) -> Bool {
        loop.detach(socket) { [self] fd in
            // The driver drops a detach when the socket closes first, so this
            // is only reached while open; if not, the fd is ours to close.
            guard !isClosed else {
                Glibc.close(fd)
                return
            }
            let pending = Array(UnsafeRawBufferPointer(start: input + inputStart, count: inputEnd - inputStart))
            isClosed = true
            server.migrate(self, fd: fd, pendingInput: pending, to: target)
        }
    }

    private func emitError(_ text: String) {
        output.error(text)
        counters.countError(text)
    }

    /// Receives a command's reply (synchronously during dispatch, or later
    /// from another shard's hop) and resumes the connection.
    func complete(_ reply: Reply) {
        guard waitingForReply else { return }
        waitingForReply = false
        if let current = currentSpec {
            // After a hop the argument views are stale if `input` moved
            // meanwhile (more pipelined bytes arrived): then the name only.
            let now = Clock.monotonicNanos()
            current._withUnsafeGuaranteedRef { spec in
                account(spec, reply, elapsed: Int((now &- commandStartNanos) / 1000),
                        commandName: client.lastCommandName,
                        args: args, argsValid: dispatching || inputMoves == inputMovesAtDispatch)
            }
            // Answered inline: the next command of this pass starts from this reading.
            if dispatching { chainedClockNanos = now }
            currentSpec = nil
        }
        if !isClosed {
            output.protocolVersion = client.protocolVersion
            reply.encode(into: &output)
        }
        if !dispatching {
            endReply()
            releaseHeldTrackingMessages()
            // An asynchronous reply: pick up where we left off.
            processInput()
        }
    }

    /// A command refused before it ran: a rejected call of it, or of its subcommand
    /// (`config|get`), as Redis's rejectCommand counts one.
    private func countRejected(_ spec: CommandSpec) {
        spec.statsList(fullName: client.lastSubcommandName)?[loopIndex].rejectedCalls.addOwned(1)
    }

    /// What every answered command counts: INFO commandstats and errorstats, the latency
    /// monitor and histogram, SLOWLOG (with the arguments while `argsValid`).
    private func account(
        _ spec: CommandSpec, _ reply: Reply, elapsed: Int, commandName: @autoclosure () -> String,
        args: @autoclosure () -> CommandArguments, argsValid: Bool
    ) {
        // Borrowed: the spec holds its stats for the engine's life (read out of
        // the array, they were retained and released per command). A container's
        // call counts in its subcommand's (the name it ran under, noted at
        // dispatch), none for a subcommand Redis does not know.
        @inline(__always) func count(_ stats: CommandStats) {
            stats.calls.addOwned(1)
            stats.microseconds.addOwned(elapsed)
            if server.latency.tracking.load(ordering: .relaxed) { stats.latency.record(micros: elapsed) }
            if reply.isError { stats.failedCalls.addOwned(1) }
        }
        if !spec.hasSubcommands {
            Unmanaged.passUnretained(spec.stats[loopIndex])._withUnsafeGuaranteedRef { count($0) }
        } else if let stats = spec.statsList(fullName: client.lastSubcommandName)?[loopIndex] {
            count(stats)
        }
        counters.commandsProcessed += 1
        if case .error(let message) = reply { counters.countError(message) }
        if server.slowlog.isSlow(elapsed) {
            let args = args()
            server.slowlog.record(
                durationMicros: elapsed,
                arguments: argsValid ? (0..<args.count).map { args.bytes($0) } : [Array(spec.name.utf8)],
                client: client)
        }
        let latencyThreshold = server.latency.thresholdMs.load(ordering: .relaxed)
        if latencyThreshold > 0 && elapsed / 1000 >= latencyThreshold {
            server.latency.record(spec.flags.contains(.fast) ? "fast-command" : "command", latencyMs: elapsed / 1000)
        }
        // CLIENT CACHING covers the next command, or a whole MULTI ... EXEC.
        if client.trackingCaching && client.multiQueue == nil && spec.name != "client" { client.trackingCaching = false }
    }

    /// A pub/sub message from PUBLISH (on this loop, or posted to it): a push
    /// under RESP3, an array under RESP2, sent at once.
    func pushMessage(_ parts: [[UInt8]]) {
        guard !isClosed else { return }
        // Messages are pushes: CLIENT REPLY OFF does not hold them back (as Redis, RESP2 too).
        output.protocolVersion = client.protocolVersion
        output.pushHeader(parts.count)
        for part in parts { output.bulk(part) }
        keepPushes()
        // From this connection's own PUBLISH (a RESP3 subscriber may publish):
        // the message goes ahead of the reply, and leaves with it.
        if !waitingForReply && !dispatching { flush() }
    }

    // MARK: - CLIENT TRACKING

    /// Tracking messages that arrived while a command of this connection was
    /// running: they follow its reply, as Redis sends a client's own
    /// invalidations after the reply of the command that caused them.
    private var heldTrackingMessages: [(Invalidation, Bool)] = []

    /// An invalidation (or `tracking-redir-broken`) posted to this loop by a
    /// shard; `redirected`: this connection receives it for another client.
    func pushTrackingMessage(_ message: Invalidation, redirected: Bool) {
        guard !isClosed else { return }
        if waitingForReply || dispatching {
            heldTrackingMessages.append((message, redirected))
            return
        }
        writeTrackingMessage(message, redirected: redirected)
        flush()
    }

    private func writeTrackingMessage(_ message: Invalidation, redirected: Bool) {
        // A push: CLIENT REPLY OFF does not hold it back (Redis's CLIENT_PUSHING).
        if message.encode(into: &output, protocolVersion: client.protocolVersion, redirected: redirected,
                          subscribed: subscriptionCount > 0) {
            keepPushes()
        }
    }

    /// After a reply: the BCAST keys the command wrote go out (see
    /// ``TrackingBroadcastBuffer``), then what arrived for us meanwhile.
    @inline(__always)
    private func releaseHeldTrackingMessages() {
        if let buffer = client.trackingBroadcasts, !buffer.isEmpty {
            for delivery in buffer.take() { server.tracking.deliver(delivery) }
        }
        guard !heldTrackingMessages.isEmpty else { return }
        let held = heldTrackingMessages
        heldTrackingMessages = []
        for (message, redirected) in held { writeTrackingMessage(message, redirected: redirected) }
    }

    // MARK: - CLIENT REPLY

    /// CLIENT REPLY OFF: no command is answered until CLIENT REPLY ON.
    private(set) var repliesOff = false
    /// CLIENT REPLY SKIP: the next command is not answered.
    private var skipNextReply = false
    /// Where the current command's reply starts in `output`, when it is to
    /// be dropped; nil when it is sent.
    private var droppedReplyStart: Int?

    /// CLIENT REPLY ON / OFF / SKIP; `answerThis`: whether CLIENT REPLY
    /// itself is answered (only ON is).
    func setReplyMode(off: Bool, skipNext: Bool, answerThis: Bool) {
        repliesOff = off
        skipNextReply = skipNext
        droppedReplyStart = answerThis ? nil : (droppedReplyStart ?? output.buffer.count)
    }

    /// Before a command runs: marks its reply for dropping under OFF or SKIP.
    /// Subscription confirmations are pushes, which Redis sends anyway (RESP2 too).
    @inline(__always)
    private func beginReply(_ spec: CommandSpec?) {
        guard repliesOff || skipNextReply else { return }
        skipNextReply = false
        if let spec, PubSubFamily.confirmsWithPush.contains(spec.name) { return }
        droppedReplyStart = output.buffer.count
    }

    /// After a push (a message, a monitor line) while a parked command's
    /// reply is to be dropped: that reply starts after the push.
    @inline(__always)
    private func keepPushes() {
        if droppedReplyStart != nil { droppedReplyStart = output.buffer.count }
    }

    /// After its reply is written: drops it when so marked.
    @inline(__always)
    private func endReply() {
        guard let start = droppedReplyStart else { return }
        droppedReplyStart = nil
        if start <= output.buffer.count { output.buffer.removeSubrange(start...) }
    }

    // MARK: - MONITOR

    /// In MONITOR mode: registered with the engine's feed under the client's id.
    private(set) var isMonitoring = false

    /// MONITOR: from now on every command any client runs is reported here.
    func startMonitoring() {
        guard !isMonitoring else { return }
        isMonitoring = true
        let loop = self.loop
        engine.monitors.add(id: client.id) { [self] line in
            loop.post { self.pushMonitorLine(line) }
        }
    }

    /// Leaves MONITOR mode (disconnect, RESET).
    func stopMonitoring() {
        guard isMonitoring else { return }
        isMonitoring = false
        engine.monitors.remove(id: client.id)
    }

    private func pushMonitorLine(_ line: [UInt8]) {
        guard !isClosed, isMonitoring else { return }
        output.buffer.append(contentsOf: line)
        keepPushes()
        if !waitingForReply { flush() }
    }

    /// Reports the command about to run to every monitor, as Redis does: a
    /// transaction's queued commands when EXEC runs them, just before EXEC.
    private func feedMonitors(_ spec: CommandSpec) {
        let monitors = engine.monitors
        if spec.name == "exec", let queue = client.multiQueue, !client.multiFailed {
            for queued in queue where !queued.spec.flags.contains(.admin) {
                monitors.feed(
                    database: client.database, source: client.address, name: queued.spec.name,
                    count: queued.arguments.count, argument: { queued.arguments[$0] })
            }
        }
        var database = client.database
        if spec.name == "select", args.count == 2, let n = Int(args.string(1)), n >= 0, n < engine.databaseCount {
            database = n  // Redis reports SELECT under the database it selected
        }
        monitors.feed(
            database: database, source: client.address, name: spec.name, count: args.count,
            argument: { self.args.bytes($0) })
    }

    /// Drops every subscription (disconnect, RESET).
    func dropSubscriptions() {
        for channel in channels { server.pubsub.unsubscribe(self, channel, kind: .channel) }
        for pattern in patterns { server.pubsub.unsubscribe(self, pattern, kind: .pattern) }
        for channel in shardChannels { server.pubsub.unsubscribe(self, channel, kind: .shardChannel) }
        channels = []
        patterns = []
        shardChannels = []
    }

    /// `GET /metrics` (Prometheus, Dragonfly's way: on the main port, told
    /// apart by its first bytes) answered from the INFO report, then closed;
    /// any other path is 404.
    private func serveHTTP(_ path: String) {
        waitingForReply = true
        let respond: (String, String, String) -> Void = { [self] status, type, body in
            let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
            output.buffer.append(contentsOf: Array(head.utf8) + Array(body.utf8))
            waitingForReply = false
            close()
        }
        guard path == "/metrics" || path.hasPrefix("/metrics?") else {
            return respond("404 Not Found", "text/plain; charset=utf-8", "Not Found: Damselfly serves /metrics\n")
        }
        InfoReport.build(server: server, from: loop, sections: ["all"]) { text in
            respond("200 OK", "text/plain; version=0.0.4; charset=utf-8", MetricsExposition.render(info: text))
        }
    }

    /// Sends what is queued; with `appendfsync always`, only once the loop's
    /// journal is durable (the replies of an iteration leave after its fsync).
    func flush() {
        guard !output.isEmpty, !isClosed else { return }
        if loop.hasSyncHook {
            loop.whenDurable { [self] in writeOutput() }
        } else {
            writeOutput()
        }
    }

    private func writeOutput() {
        guard !output.isEmpty else { return }
        counters.netOutputBytes += output.buffer.count
        counters.writesProcessed += 1
        if let tls {
            var cipher: [UInt8] = []
            guard tls.send(&output.buffer, into: &cipher) else { return close() }
            if !cipher.isEmpty { loop.write(socket, &cipher) }
        } else {
            loop.write(socket, &output.buffer)
        }
        // A parked command's reply that CLIENT REPLY drops starts after what just left.
        if droppedReplyStart != nil { droppedReplyStart = output.buffer.count }
        checkOutputLimit()
    }

    /// Since when the unsent replies have been above the soft limit (0: they are not).
    private var overSoftLimitSinceMs: Int64 = 0

    /// Redis's `client-output-buffer-limit`: a client that does not read its replies (its
    /// messages, when subscribed; its stream, when a replica) is closed once they reach the
    /// hard limit, or stay above the soft one for its seconds, so the server's memory stays
    /// bounded. Logged as Redis logs it.
    private func checkOutputLimit() {
        let limit = server.limits.outputLimit(pubsub: subscriptionCount > 0, replica: replicaLink != nil)
        guard limit.hard > 0 || limit.soft > 0, !isClosed else { return }
        let queued = loop.queuedBytes(socket) + output.buffer.count
        if limit.exceeded(queued: queued, overSoftSinceMs: &overSoftLimitSinceMs) {
            server.replication.log(ReplicationMaster.outputLimitLogLine(client))
            close()
        }
    }

    /// Flushes and closes (QUIT, protocol errors, CLIENT KILL, shutdown).
    func close() {
        guard !isClosed else { return }
        isClosed = true
        let socket = self.socket
        loop.whenDurable { [self] in
            writeOutput()
            loop.close(socket)
        }
        releaseClient()
    }

    /// What a closed connection gives up, whichever way it closed (the peer, QUIT, CLIENT
    /// KILL): marked closed first, so that no shard pops for this client from now on; then
    /// a client that leaves while parked is unblocked at once; then its WATCHes,
    /// subscriptions, MONITOR, tracking, a CLIENT PAUSE hold and the close action.
    private func releaseClient() {
        client.life.markClosed()
        client.blockedOn?.cancel(reply: nil)
        MultiFamily.unwatch(client, shardSet: engine.shardSet)
        dropSubscriptions()
        stopMonitoring()
        TrackingFamily.disable(client, server: server)
        server.connectionClosed(self)
        if isHeldByPause {
            isHeldByPause = false
            clientPause.forget(self)
        }
        let action = onClose
        onClose = nil
        action?()
    }

    /// CLIENT KILL / shutdown from this loop: closes once the command in flight is answered.
    func kill() {
        if waitingForReply {
            client.closeRequested = true
        } else {
            close()
        }
    }

    /// The client's idle time in seconds.
    var idleSeconds: Int { Clock.idleSeconds(since: client.lastCommandAtNanos) }
}

/// Where the reply of one command of a squashed run waits until the run's
/// earlier commands are answered (see Connection's "Pipeline squashing").
private final class SquashSlot: ReplySink {
    let index: Int
    /// Held only while the command is in flight (the reply may come back after
    /// the connection closed); cleared when the run finishes, so no cycle stays.
    private var connection: Connection?
    /// Unretained: a spec lives as long as its registry (as `currentSpec`).
    private var spec: Unmanaged<CommandSpec>?
    private var reply: Reply?
    /// The command's arguments while it is in flight and until the next
    /// run: ``Connection/addToSquashRun(_:)`` swaps them with the
    /// connection's, so the connection parses on into the object the slot
    /// held (each slot keeps one for the connection's life; no array of
    /// spares, no reference counting per command).
    var arguments = CommandArguments()
    private var startNanos: UInt64 = 0
    private var doneNanos: UInt64 = 0
    private(set) var inputMovesAtStart = 0

    init(index: Int, hopBatch: KeyHopBatch) {
        self.index = index
        self.hopBatch = hopBatch
    }

    /// Returns the command's start time, which also stamps the client's last command.
    @discardableResult
    func start(_ connection: Connection, _ spec: CommandSpec, inputMoves: Int, now: UInt64) -> UInt64 {
        self.connection = connection
        self.spec = Unmanaged.passUnretained(spec)
        startNanos = now
        inputMovesAtStart = inputMoves
        return startNanos
    }

    /// The connection's batch: the run's hops to one shard leave as one
    /// message. Kept here (a load, where asking the connection for it cost
    /// some hundred instructions per hop); asked only while the slot's
    /// command is being dispatched, that is during a run.
    let hopBatch: KeyHopBatch?

    func complete(_ reply: Reply) {
        complete(reply, arrivedAt: Clock.monotonicNanos())
    }

    func complete(_ reply: Reply, arrivedAt nanos: UInt64) {
        guard let connection, self.reply == nil else { return }
        self.reply = reply
        doneNanos = nanos
        connection.squashSlotDone()
    }

    /// The command, its reply and its time in µs (its arguments stay, in
    /// ``arguments``); the slot is free again.
    /// Moved out (`take()`), not copied and then cleared: reference counts fewer each way.
    func finish() -> (Unmanaged<CommandSpec>, Reply, Int) {
        connection = nil
        return (spec.take()!, reply.take()!, Int((doneNanos &- startNanos) / 1000))
    }
}
