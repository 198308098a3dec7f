import DamselflyACL
import DamselflyRESP
import DamselflyRuntime
import Synchronization

/// What a command is, for routing and for COMMAND INFO.
public struct CommandFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let write = CommandFlags(rawValue: 1 << 0)
    public static let readonly = CommandFlags(rawValue: 1 << 1)
    /// May grow memory: refused with OOM past maxmemory.
    public static let denyOOM = CommandFlags(rawValue: 1 << 2)
    public static let admin = CommandFlags(rawValue: 1 << 3)
    public static let fast = CommandFlags(rawValue: 1 << 4)
    /// Allowed before AUTH (AUTH, HELLO, QUIT, RESET...).
    public static let noAuth = CommandFlags(rawValue: 1 << 5)
    public static let loading = CommandFlags(rawValue: 1 << 6)
    public static let stale = CommandFlags(rawValue: 1 << 7)
    public static let noscript = CommandFlags(rawValue: 1 << 8)
    public static let blocking = CommandFlags(rawValue: 1 << 9)
    /// Refused between MULTI and EXEC (Redis's `no-multi`: SAVE, SHUTDOWN): run inside
    /// EXEC they would wait for a global transaction behind the one EXEC holds.
    public static let noMulti = CommandFlags(rawValue: 1 << 10)

    /// Names as COMMAND INFO reports them.
    public var names: [String] {
        var out: [String] = []
        if contains(.write) { out.append("write") }
        if contains(.readonly) { out.append("readonly") }
        if contains(.denyOOM) { out.append("denyoom") }
        if contains(.admin) { out.append("admin") }
        if contains(.noscript) { out.append("noscript") }
        if contains(.loading) { out.append("loading") }
        if contains(.stale) { out.append("stale") }
        if contains(.noAuth) { out.append("no_auth") }
        if contains(.blocking) { out.append("blocking") }
        if contains(.fast) { out.append("fast") }
        if contains(.noMulti) { out.append("no_multi") }
        return out
    }
}

/// The replies by which a write command says it changed nothing, so that
/// WATCHers, blocked clients and the save counter are left alone, as Redis
/// calls `signalModifiedKey` only on the paths that modify (its t_*.c).
/// Commands whose no-op reply is ambiguous (ZADD without CH, DEL of several
/// keys across shards, SET ... GET) say so from their operation instead,
/// through ``ShardContext/markUnchanged()``.
public enum UnchangedReply: UInt8, Sendable {
    /// Every successful reply counts as a change.
    case never
    /// `:0` (SADD of present members, DEL of a missing key, EXPIRE of a missing key or a refused condition).
    case zero
    /// `:0` or a negative integer (LINSERT: missing key, pivot not found).
    case notPositive
    /// nil or an empty array (a pop from a missing key, GETDEL of a missing key).
    case nullOrEmpty

    static let table: [String: UnchangedReply] = [
        "sadd": .zero, "srem": .zero, "smove": .zero, "del": .zero, "unlink": .zero,
        "expire": .zero, "pexpire": .zero, "expireat": .zero, "pexpireat": .zero, "persist": .zero,
        "hsetnx": .zero, "hdel": .zero, "setnx": .zero, "msetnx": .zero,
        "zrem": .zero, "zremrangebyscore": .zero, "zremrangebyrank": .zero, "zremrangebylex": .zero,
        "lrem": .zero, "lpushx": .zero, "rpushx": .zero, "renamenx": .zero, "move": .zero, "copy": .zero,
        "linsert": .notPositive,
        "lpop": .nullOrEmpty, "rpop": .nullOrEmpty, "spop": .nullOrEmpty, "getdel": .nullOrEmpty,
        "lmove": .nullOrEmpty, "rpoplpush": .nullOrEmpty, "zpopmin": .nullOrEmpty, "zpopmax": .nullOrEmpty,
        "lmpop": .nullOrEmpty, "zmpop": .nullOrEmpty,
    ]

    /// Whether `reply` may come from a run that changed a key: not an error
    /// (a write command checks before it modifies), not a reply that says
    /// nothing happened. On the rule, not the spec: a one-key step keeps the
    /// rule (one byte), where reading it through the spec retained the spec
    /// around the call.
    @inlinable
    public func mayHaveChanged(_ reply: Reply) -> Bool {
        switch reply {
        case .error: return false
        case .integer(let n):
            switch self {
            case .zero: return n != 0
            case .notPositive: return n > 0
            case .never, .nullOrEmpty: return true
            }
        case .null, .nullArray: return self != .nullOrEmpty
        case .array(let a), .set(let a): return !(a.isEmpty && self == .nullOrEmpty)
        default: return true
        }
    }
}

/// Parses and schedules one command on the connection's thread. It must
/// eventually call ``CommandCall/reply(_:)`` exactly once.
public typealias CommandHandler = (CommandCall) -> Void

/// One command's registration: name, arity (negative: at least), flags and
/// key positions as Redis's command table has them, plus its handler.
public final class CommandSpec: Sendable {
    public let name: String
    public let arity: Int
    public let flags: CommandFlags
    public let firstKey: Int
    public let lastKey: Int
    public let keyStep: Int
    public let group: String
    public let handler: @Sendable (CommandCall) -> Void
    /// Per-loop call statistics for INFO commandstats.
    public let stats: [CommandStats]
    /// A container's: each subcommand's per-loop statistics, by full name (`config|get`),
    /// as Redis counts a container's calls (`cmdstat_config|get`).
    public let subcommandStats: [String: [CommandStats]]
    /// Which of this write command's replies say it changed nothing.
    public let unchangedWhen: UnchangedReply
    /// Its id in Redis's command table (``ACLCommandTable``), the bit ACL rules set;
    /// nil for a command Redis does not have.
    public let aclCommandID: Int?
    /// Redis's flags for it that the registration does not carry (`movablekeys`,
    /// `may_replicate`, `no_mandatory_keys`), from the same table.
    public let tableFlags: ACLCommandFlags
    /// A container (CLIENT, CONFIG...): Redis names its calls `client|list`.
    public let hasSubcommands: Bool
    /// One key, at position 1, and nothing that reaches past it: not blocking,
    /// admin, noscript, movable-key or a container. What a connection may
    /// dispatch without waiting for the command before (pipeline squashing),
    /// decided once here instead of per command.
    public let isPlainOneKey: Bool
    /// Runs at once even inside MULTI instead of being queued (EXEC, DISCARD,
    /// MULTI, WATCH, QUIT, RESET: Redis's rule; UNWATCH is queued, and runs,
    /// harmlessly, inside EXEC), decided once here instead of a string lookup
    /// per queued command.
    public let runsAtOnceInMulti: Bool
    /// Queued in MULTI, makes EXEC lock every shard whole: it changes the
    /// database mid-block (SELECT, SWAPDB), or names keys beyond its table
    /// positions (MOVE, COPY to another database; SORT's patterns and STORE).
    public let execLocksEveryShard: Bool

    public init(
        _ name: String, arity: Int, flags: CommandFlags, firstKey: Int = 0, lastKey: Int = 0, keyStep: Int = 0,
        group: String, loops: Int, handler: @escaping @Sendable (CommandCall) -> Void
    ) {
        self.name = name
        self.arity = arity
        self.flags = flags
        self.firstKey = firstKey
        self.lastKey = lastKey
        self.keyStep = keyStep
        self.group = group
        self.handler = handler
        self.stats = (0..<max(loops, 1)).map { _ in CommandStats() }
        self.unchangedWhen = UnchangedReply.table[name] ?? .never
        self.aclCommandID = ACLCommandTable.id(name)
        self.tableFlags = aclCommandID.map { ACLCommandTable.entries[$0].flags } ?? []
        self.hasSubcommands = aclCommandID.map { !ACLCommandTable.subcommands[$0].isEmpty } ?? false
        var subcommandStats: [String: [CommandStats]] = [:]
        if hasSubcommands, let id = aclCommandID {
            for sub in ACLCommandTable.subcommands[id] {
                subcommandStats[ACLCommandTable.entries[sub].name] = (0..<max(loops, 1)).map { _ in CommandStats() }
            }
        }
        self.subcommandStats = subcommandStats
        self.isPlainOneKey = firstKey == 1 && lastKey == 1
            && !flags.contains(.blocking) && !flags.contains(.admin) && !flags.contains(.noscript)
            && !tableFlags.contains(.movableKeys) && !hasSubcommands
        self.runsAtOnceInMulti = ["exec", "discard", "multi", "watch", "quit", "reset"].contains(name)
        self.execLocksEveryShard = ["select", "move", "copy", "swapdb", "sort", "sort_ro"].contains(name)
    }

    /// A write in Redis's table: Damselfly's own `.write` less the commands Redis marks only
    /// `may_replicate` (EVAL, EVALSHA, FCALL: a script is refused for what it calls, not
    /// for being a script). What `min-replicas-to-write` refuses.
    @inlinable
    public var writesAsRedis: Bool { flags.contains(.write) && !tableFlags.contains(.mayReplicate) }

    /// A write, or a command Redis marks `may_replicate` (PUBLISH, PFCOUNT, EVAL...): what
    /// CLIENT PAUSE WRITE holds back and a read-only script may not call.
    @inlinable
    public var writesOrMayReplicate: Bool { flags.contains(.write) || tableFlags.contains(.mayReplicate) }

    /// The name Redis gives the call (CLIENT LIST's `cmd=`): `client|list` for a known
    /// subcommand of a container, else the command's own name.
    public func fullName(subcommand: UnsafeRawBufferPointer) -> String {
        guard hasSubcommands, let id = aclCommandID else { return name }
        return ACLCommandTable.entries[ACLCommandTable.id(command: id, firstArgument: Array(subcommand))].name
    }

    /// The per-loop statistics a call counts in, given the name it runs under
    /// (``fullName(subcommand:)``; nil with no subcommand): the command's own, or a
    /// container's subcommand's (`config|get`); nil for a subcommand Redis's table does
    /// not have, which Redis refuses before it counts anything.
    public func statsList(fullName: String?) -> [CommandStats]? {
        guard hasSubcommands, let fullName else { return stats }
        return subcommandStats[fullName]
    }

    /// ``statsList(fullName:)`` given the call's first argument, if any.
    public func statsList(subcommand: UnsafeRawBufferPointer?) -> [CommandStats]? {
        statsList(fullName: subcommand.map { fullName(subcommand: $0) })
    }

    /// Redis's error for a container's known subcommand (its ``fullName(subcommand:)``)
    /// called with the wrong number of arguments (`count`, the container's name
    /// included), checked before it runs as Redis checks a subcommand's arity; nil when
    /// the count is right or the subcommand unknown (its handler answers that).
    public func subcommandArityError(fullName: String, argumentCount count: Int) -> String? {
        guard hasSubcommands, let sub = ACLCommandTable.ids[fullName], ACLCommandTable.parents[sub] >= 0,
              !Self.arity(ACLCommandTable.entries[sub].arity, accepts: count) else { return nil }
        return "ERR wrong number of arguments for '\(fullName)' command"
    }

    /// Whether `reply` may come from a run that changed a key (``UnchangedReply/mayHaveChanged(_:)``).
    @inlinable
    public func mayHaveChanged(_ reply: Reply) -> Bool { unchangedWhen.mayHaveChanged(reply) }

    /// Whether `count` arguments (the name included) satisfy the arity.
    @inlinable
    public func acceptsArgumentCount(_ count: Int) -> Bool {
        Self.arity(arity, accepts: count)
    }

    /// Redis's arity rule: exactly `arity` arguments, or at least `-arity` when negative.
    @inlinable
    public static func arity(_ arity: Int, accepts count: Int) -> Bool {
        arity >= 0 ? count == arity : count >= -arity
    }
}

/// Calls, time and failures of one command (or subcommand) on one loop, and its latency
/// histogram (INFO latencystats, LATENCY HISTOGRAM). That loop is the only writer
/// (``Atomic/addOwned(_:)``, plain moves); INFO reads from any thread, and ``reset()``
/// runs on the loop too (CONFIG RESETSTAT goes round the loops).
public final class CommandStats: Sendable {
    public let calls = Atomic<Int>(0)
    public let microseconds = Atomic<Int>(0)
    public let rejectedCalls = Atomic<Int>(0)
    public let failedCalls = Atomic<Int>(0)
    public let latency = LatencyHistogram()
    public init() {}
    public func reset() {
        calls.store(0, ordering: .relaxed)
        microseconds.store(0, ordering: .relaxed)
        rejectedCalls.store(0, ordering: .relaxed)
        failedCalls.store(0, ordering: .relaxed)
        latency.reset()
    }
}

/// The buckets of Redis's per-command latency histograms as LATENCY HISTOGRAM reports
/// them: Redis records each call's microseconds (as nanoseconds, at least 1) in an HDR
/// histogram of 2 significant digits and reads it with a logarithmic iterator from
/// 1024 ns, doubling; bucket k holds the calls up to the highest value equivalent to
/// 1024·2^k ns, 2^(10+k) + 2^(3+k) − 1, and is labelled with that in whole µs (1, 2, 4,
/// 8, 16, 33, 66 ...). Calls are clamped to 1 s, as Redis's.
public enum LatencyBuckets {
    public static let count = 21

    /// 2^(10+k) + 2^(3+k) − 1, written as 129·2^(3+k) − 1: one shift (k is 0 ..< ``count``).
    @inlinable @inline(__always)
    public static func upperNanos(_ k: Int) -> Int { (129 &<< (3 &+ k)) &- 1 }

    /// The bucket of a value of `nanos` (at least 1): bucket 0 up to 1031 ns, else the
    /// power of two at or below it from 2^10 on, one more above that bucket's upper value.
    @inlinable
    public static func index(nanos: Int) -> Int {
        let k = (Int.bitWidth &- 11) &- nanos.leadingZeroBitCount
        if k <= 0 { return nanos > upperNanos(0) ? 1 : 0 }
        return min(nanos > upperNanos(k) ? k &+ 1 : k, count - 1)
    }

    /// The label of bucket k in LATENCY HISTOGRAM's `histogram_usec`.
    public static func labelMicros(_ k: Int) -> Int { upperNanos(k) / 1000 }
}

/// The command table: lower-case name → spec. Filled at start-up, then read-only.
public final class CommandRegistry: @unchecked Sendable {
    // Invariant: `commands` is only mutated during start-up, before any loop runs.
    public private(set) var commands: [String: CommandSpec] = [:]
    public let loopCount: Int

    public init(loopCount: Int) {
        self.loopCount = loopCount
    }

    public func register(
        _ name: String, arity: Int, flags: CommandFlags, firstKey: Int = 0, lastKey: Int = 0, keyStep: Int = 0,
        group: String, handler: @escaping @Sendable (CommandCall) -> Void
    ) {
        let spec = CommandSpec(
            name, arity: arity, flags: flags, firstKey: firstKey, lastKey: lastKey, keyStep: keyStep,
            group: group, loops: loopCount, handler: handler)
        commands[name] = spec
        index.insert(Array(name.utf8), spec)
    }

    /// `commands` again, keyed by the name's bytes: what ``lookup(_:)`` reads on every command.
    @usableFromInline var index = NameIndex()

    /// Looks up a command by the bytes of its name, case-insensitively. Runs once per
    /// command: hashes the bytes while lower-casing them and compares bytes (``NameIndex``);
    /// a `String` key would cost a UTF-8 validation and a SipHash each time.
    /// Always inlined: called once per command, from the connection's parse loop.
    @inlinable @inline(__always)
    public func lookup(_ name: UnsafeRawBufferPointer) -> CommandSpec? {
        guard name.count <= 32 else { return nil }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { lower in
            var hash = NameIndex.seed
            for i in 0..<name.count {
                let c = name[i]
                let l = (c >= 65 && c <= 90) ? c + 32 : c
                lower[i] = l
                hash = NameIndex.mix(hash, l)
            }
            return index.find(UnsafeBufferPointer(rebasing: lower[0..<name.count]), hash: hash)
        }
    }
}

/// An open-addressing table of command names (lower-case bytes, FNV-1a hash) to specs,
/// at most half full. Filled at start-up, then read-only, as `commands`.
@usableFromInline
struct NameIndex {
    @usableFromInline struct Slot {
        @usableFromInline var hash: UInt64 = 0
        @usableFromInline var name: [UInt8] = []
        @usableFromInline var spec: CommandSpec? = nil
    }

    @usableFromInline var slots = [Slot](repeating: Slot(), count: 64)
    @usableFromInline var count = 0

    @usableFromInline init() {}

    @usableFromInline static let seed: UInt64 = 0xcbf2_9ce4_8422_2325

    @inlinable @inline(__always)
    static func mix(_ hash: UInt64, _ byte: UInt8) -> UInt64 { (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }

    @inlinable
    @inline(__always)
    func find(_ name: UnsafeBufferPointer<UInt8>, hash: UInt64) -> CommandSpec? {
        slots.withUnsafeBufferPointer { slots in
            let mask = slots.count - 1
            var i = Int(truncatingIfNeeded: hash) & mask
            while let spec = slots[i].spec {
                if slots[i].hash == hash && slots[i].name.elementsEqual(name) { return spec }
                i = (i + 1) & mask
            }
            return nil
        }
    }

    /// Adds or replaces `name` (lower-case bytes).
    mutating func insert(_ name: [UInt8], _ spec: CommandSpec) {
        if (count + 1) * 2 > slots.count {
            let old = slots
            slots = [Slot](repeating: Slot(), count: old.count * 2)
            count = 0
            for slot in old { if let s = slot.spec { insert(slot.name, s) } }
        }
        let hash = name.reduce(NameIndex.seed, NameIndex.mix)
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i].spec != nil && slots[i].name != name { i = (i + 1) & mask }
        if slots[i].spec == nil { count += 1 }
        slots[i] = Slot(hash: hash, name: name, spec: spec)
    }
}
