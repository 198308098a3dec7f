#if canImport(Glibc)
import Glibc
#endif
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions

/// SORT and SORT_RO (Redis 7.0's sort.c semantics).
///
/// A SORT whose BY or GET patterns name other keys cannot know those keys
/// before it has read the sorted value, and they may live on any shard: it
/// runs with every shard lent to the connection's thread
/// (``CommandCall/withEveryShardLent(_:done:)``, the mechanism of scripts that
/// touch undeclared keys), so its reads and its STORE are atomic. A SORT
/// without such patterns is an ordinary transaction over its key and its
/// STORE destination.
public enum SortFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "generic"
        r.register("sort", arity: -2, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            sort(call, readOnly: false)
        }
        r.register("sort_ro", arity: -2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            sort(call, readOnly: true)
        }
    }

    /// SORT's keys as Redis's `sortGetKeys` finds them in `args` (the
    /// command name first): the sorted key and the last STORE destination,
    /// skipping the arguments of LIMIT, GET and BY (COMMAND GETKEYS).
    public static func keyPositions(_ args: [[UInt8]]) -> [Int] {
        var store: Int? = nil
        var i = 2
        while i < args.count {
            switch String(decoding: args[i], as: UTF8.self).lowercased() {
            case "limit": i += 2
            case "get", "by": i += 1
            case "store" where i + 1 < args.count:
                store = i + 1
                i += 1
            default: break
            }
            i += 1
        }
        return [1] + (store.map { [$0] } ?? [])
    }

    // MARK: - Options

    /// SORT's parsed options.
    public struct Options: Sendable {
        public var desc = false
        public var alpha = false
        public var limitStart = 0
        public var limitCount = -1
        /// The BY pattern (nil: sort by the elements themselves).
        public var by: [UInt8]?
        /// BY named a pattern without `*` (such as `nosort`): keep the input order.
        public var dontSort = false
        public var gets: [[UInt8]] = []
        public var store: [UInt8]?
        /// Run by a script: a set sorted with `dontSort` is sorted anyway (Redis
        /// keeps scripts and replicas deterministic).
        public var inScript = false

        public init() {}

        /// Whether a pattern may name another key (BY with `*`, or a GET
        /// other than `#` with `*`): such a SORT needs every shard.
        public var readsOtherKeys: Bool {
            if let by, !dontSort, by.contains(UInt8(ascii: "*")) { return true }
            return gets.contains { $0 != [UInt8(ascii: "#")] && $0.contains(UInt8(ascii: "*")) }
        }
    }

    /// Parses SORT's options from argument 2 on, Redis's order of checks;
    /// returns the error reply on failure.
    static func parseOptions(_ call: CommandCall, readOnly: Bool) -> Result<Options, SortError> {
        var o = Options()
        o.inScript = call.script != nil
        var j = 2
        let argc = call.args.count
        while j < argc {
            let left = argc - j - 1
            if call.isArg(j, "asc") {
                o.desc = false
            } else if call.isArg(j, "desc") {
                o.desc = true
            } else if call.isArg(j, "alpha") {
                o.alpha = true
            } else if call.isArg(j, "limit") && left >= 2 {
                guard let start = call.integer(j + 1), let count = call.integer(j + 2) else {
                    return .failure(.reply(.notInteger))
                }
                o.limitStart = Int(start)
                o.limitCount = Int(count)
                j += 2
            } else if !readOnly && call.isArg(j, "store") && left >= 1 {
                o.store = call.args.bytes(j + 1)
                j += 1
            } else if call.isArg(j, "by") && left >= 1 {
                let pattern = call.args.bytes(j + 1)
                o.by = pattern
                if !pattern.contains(UInt8(ascii: "*")) { o.dontSort = true }
                j += 1
            } else if call.isArg(j, "get") && left >= 1 {
                o.gets.append(call.args.bytes(j + 1))
                j += 1
            } else {
                return .failure(.reply(.syntaxError))
            }
            j += 1
        }
        return .success(o)
    }

    /// Why a sort produced no rows.
    enum SortError: Error {
        case reply(Reply)
    }

    /// A sort's output rows (nil: a GET found nothing), or its error.
    public enum SortOutcome {
        case success([[UInt8]?])
        case failure(Reply)
    }

    static let scoreError = Reply.error("ERR One or more scores can't be converted into double")

    // MARK: - Patterns

    /// Redis's `lookupKeyByPattern` substitution: the key named by `pattern`
    /// for `element` (the first `*` replaced), and the hash field after the
    /// first `->` that follows the `*` (when something follows it). Nil when
    /// the pattern has no `*` (a fixed key names nothing).
    public static func substitute(_ pattern: [UInt8], _ element: [UInt8]) -> (key: [UInt8], field: [UInt8]?)? {
        guard let star = pattern.firstIndex(of: UInt8(ascii: "*")) else { return nil }
        var fieldStart: Int? = nil
        var i = star + 1
        while i + 1 < pattern.count {
            if pattern[i] == UInt8(ascii: "-") && pattern[i + 1] == UInt8(ascii: ">") {
                if i + 2 < pattern.count { fieldStart = i }
                break
            }
            i += 1
        }
        let postfixEnd = fieldStart ?? pattern.count
        var key = Array(pattern[..<star])
        key.append(contentsOf: element)
        key.append(contentsOf: pattern[(star + 1)..<postfixEnd])
        let field = fieldStart.map { Array(pattern[($0 + 2)...]) }
        return (key, field)
    }

    /// The value a pattern names for `element`: `#` is the element itself,
    /// a string key its value, `key->field` a hash field; nil otherwise.
    static func lookup(_ pattern: [UInt8], _ element: [UInt8], _ resolve: ([UInt8]) -> StoredValue?) -> [UInt8]? {
        if pattern == [UInt8(ascii: "#")] { return element }
        guard let (key, field) = substitute(pattern, element), let value = resolve(key) else { return nil }
        if let field {
            guard case .hash(let hash) = value else { return nil }
            return hash.get(field)
        }
        return StringFamily.stringBytes(value)
    }

    /// SORT's numeric reading of a value: C `strtod` that must reach the end
    /// of the string (an empty string is 0; leading blanks are skipped; an
    /// embedded NUL ends it), NaN and out-of-range values refused.
    public static func sortScore(_ bytes: [UInt8]) -> Double? {
        var text = bytes
        text.append(0)
        return text.withUnsafeBufferPointer { buffer -> Double? in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { base in
                var end: UnsafeMutablePointer<CChar>? = nil
                errno = 0
                let value = strtod(base, &end)
                guard let end, end.pointee == 0, errno != ERANGE, !value.isNaN else { return nil }
                return value
            }
        }
    }

    // MARK: - The sort

    /// Sorts `value` (nil: a missing key, sorted as an empty list) as `o`
    /// asks; `resolve` finds the keys that patterns name. Returns the output
    /// rows: the elements, or with GETs one row per GET per element (nil
    /// where the pattern found nothing).
    public static func sortRows(
        _ value: StoredValue?, _ o: Options, resolve: ([UInt8]) -> StoredValue?
    ) -> SortOutcome {
        var o = o
        var byPattern = o.by
        var isSet = false
        switch value {
        case nil, .list?, .zset?: break
        case .set?: isSet = true
        default: return .failure(.wrongType)
        }
        if o.dontSort && isSet && (o.store != nil || o.inScript) {
            // A set has no order of its own: sort it so STORE and scripts
            // give the same result everywhere.
            o.dontSort = false
            o.alpha = true
            byPattern = nil
        }
        let length: Int
        switch value {
        case .list(let l)?: length = l.count
        case .set(let s)?: length = s.count
        case .zset(let z)?: length = z.count
        default: length = 0
        }
        var start = max(o.limitStart, 0)
        var end: Int
        if o.limitCount < 0 {
            end = length - 1
        } else {
            let (sum, overflow) = start.addingReportingOverflow(o.limitCount - 1)
            end = overflow ? Int.max : sum
        }
        if start >= length {
            start = length - 1
            end = length - 2
        }
        if end >= length { end = length - 1 }

        var elements: [[UInt8]] = []
        switch value {
        case .list(let list)? where o.dontSort:
            if end >= start {
                let from = o.desc ? length - start - 1 : start
                let wanted = end - start + 1
                list.forEach(from: from, reverse: o.desc) { data, _ in
                    elements.append([UInt8](data))
                    return elements.count < wanted
                }
            }
            end -= start
            start = 0
        case .zset(let zset)? where o.dontSort:
            if end >= start {
                let ranks = o.desc ? (length - end - 1)..<(length - start) : start..<(end + 1)
                zset.forEach(ranks: ranks, reverse: o.desc) { elements.append($0.member) }
            }
            end -= start
            start = 0
        case .list(let list)?: elements = list.elements
        case .set(let set)?: set.forEach { elements.append($0) }
        case .zset(let zset)?: elements = zset.allEntries.map(\.member)
        default: break
        }

        if !o.dontSort && !elements.isEmpty {
            var items = elements.map { SortItem(element: $0, score: 0, compare: nil) }
            var conversionError = false
            for j in items.indices {
                let by: [UInt8]
                if let byPattern {
                    guard let found = lookup(byPattern, items[j].element, resolve) else { continue }
                    by = found
                } else {
                    by = items[j].element
                }
                if o.alpha {
                    if byPattern != nil { items[j].compare = by }
                } else if let score = sortScore(by) {
                    items[j].score = score
                } else {
                    conversionError = true
                }
            }
            if conversionError { return .failure(scoreError) }
            let alpha = o.alpha, desc = o.desc, byPatternSet = byPattern != nil
            items.sort { a, b in
                let c = SortItem.compare(a, b, alpha: alpha, byPattern: byPatternSet)
                return desc ? c > 0 : c < 0
            }
            elements = items.map(\.element)
        }

        var rows: [[UInt8]?] = []
        guard end >= start else { return .success(rows) }
        for j in start...end {
            let element = elements[j]
            if o.gets.isEmpty {
                rows.append(element)
            } else {
                for pattern in o.gets { rows.append(lookup(pattern, element, resolve)) }
            }
        }
        return .success(rows)
    }

    /// One element being sorted with what it sorts by.
    struct SortItem {
        var element: [UInt8]
        var score: Double
        var compare: [UInt8]?

        /// Redis's `sortCompare` before DESC: numeric by score, ties by the
        /// elements' bytes; ALPHA by the BY values (a missing one first, two
        /// missing ones equal) or by the elements.
        static func compare(_ a: SortItem, _ b: SortItem, alpha: Bool, byPattern: Bool) -> Int {
            if !alpha {
                if a.score > b.score { return 1 }
                if a.score < b.score { return -1 }
                return ZEntry.compareMembers(a.element, b.element)
            }
            if byPattern {
                switch (a.compare, b.compare) {
                case (nil, nil): return 0
                case (nil, _): return -1
                case (_, nil): return 1
                case let (x?, y?): return ZEntry.compareMembers(x, y)
                }
            }
            return ZEntry.compareMembers(a.element, b.element)
        }
    }

    // MARK: - Running it

    static func sort(_ call: CommandCall, readOnly: Bool) {
        let options: Options
        switch parseOptions(call, readOnly: readOnly) {
        case .success(let o): options = o
        case .failure(.reply(let r)): return call.reply(r)
        }
        let source = call.key(1)
        if options.readsOtherKeys { return sortWithEveryShard(call, source, options) }
        let none: ([UInt8]) -> StoredValue? = { _ in nil }
        guard let destBytes = options.store else {
            let database = call.client.database
            let noTouch = call.client.noTouch
            let shardIndex = source.withBytes { call.shardSet.shardIndex(of: $0, hash: source.hash) }
            let locks = ShardLockSet(fingerprints: [lockFingerprint(keyHash: source.hash, database: database)], mode: .shared)
            return call.runOnShard(shardIndex, locks: locks) { shard in
                let ctx = ShardContext(shard: shard, databaseIndex: database, noTouch: noTouch)
                let value = ctx.lookupRead(source).map { ctx.database.value(at: $0) }
                // A SORT without STORE changes nothing (it is a write command only for its STORE).
                ctx.markUnchanged()
                return rowsReply(sortRows(value, options, resolve: none))
            }
        }
        let dest = KeyRef(destBytes)
        call.runOnKeysTwoPhase(
            [source, dest], mode: .exclusive,
            check: { ctx, positions -> SortOutcome? in
                guard positions.contains(0) else { return nil }
                let value = ctx.lookupRead(source).map { ctx.database.value(at: $0) }
                return sortRows(value, options, resolve: none)
            },
            decide: { checks -> SortOutcome in checks.compactMap { $0 }.first! },
            apply: { ctx, positions, outcome in
                guard positions.contains(1), case .success(let rows) = outcome else { return ctx.markUnchanged() }
                storeRows(&ctx, dest, rows)
            },
            reply: { (outcome: SortOutcome) -> Reply in
                switch outcome {
                case .success(let rows): return .integer(rows.count)
                case .failure(let error): return error
                }
            }, writtenPositions: [1])
    }

    /// The reply of a SORT without STORE.
    static func rowsReply(_ outcome: SortOutcome) -> Reply {
        switch outcome {
        case .success(let rows): return .array(rows.map { $0.map(Reply.bulk) ?? .null })
        case .failure(let error): return error
        }
    }

    /// STORE: the rows as a list (a missing GET stores an empty string); an
    /// empty result deletes the destination.
    static func storeRows(_ ctx: inout ShardContext, _ dest: KeyRef, _ rows: [[UInt8]?]) {
        if rows.isEmpty {
            if ctx.delete(dest) { ctx.notify(.generic, "del", dest) } else { ctx.markUnchanged() }
            return
        }
        let list = ListValue()
        for row in rows { list.pushBack(row ?? []) }
        ctx.store(dest, .list(list))
        ctx.notify(.list, "sortstore", dest)
    }

    /// A SORT whose patterns name other keys: every shard is lent to this
    /// thread, the sort reads wherever the patterns lead, and STORE writes.
    static func sortWithEveryShard(_ call: CommandCall, _ source: KeyRef, _ options: Options) {
        let shardSet = call.shardSet
        let database = call.client.database
        let noTouch = call.client.noTouch
        let body: () -> Reply = {
            var contexts: [ShardContext?] = Array(repeating: nil, count: shardSet.count)
            func context(_ key: KeyRef) -> ShardContext {
                let index = key.withBytes { shardSet.shardIndex(of: $0, hash: key.hash) }
                if let ctx = contexts[index] { return ctx }
                let ctx = ShardContext(shard: shardSet.shards[index], databaseIndex: database, noTouch: noTouch)
                contexts[index] = ctx
                return ctx
            }
            let resolve: ([UInt8]) -> StoredValue? = { bytes in
                let key = KeyRef(bytes)
                let ctx = context(key)
                return ctx.lookupRead(key).map { ctx.database.value(at: $0) }
            }
            let sourceContext = context(source)
            let value = sourceContext.lookupRead(source).map { sourceContext.database.value(at: $0) }
            let outcome = sortRows(value, options, resolve: resolve)
            guard let destBytes = options.store else { return rowsReply(outcome) }
            guard case .success(let rows) = outcome else { return rowsReply(outcome) }
            let dest = KeyRef(destBytes)
            var ctx = context(dest)
            storeRows(&ctx, dest, rows)
            ctx.shard.noteWritten([lockFingerprint(keyHash: dest.hash, database: database)])
            if let journal = ctx.shard.journal {
                // The effect, not the command: a replay cannot re-read the patterns' keys
                // across shards.
                journal.append(database: database, [Array("DEL".utf8), destBytes])
                if !rows.isEmpty { journal.append(database: database, [Array("RPUSH".utf8), destBytes] + rows.map { $0 ?? [] }) }
            }
            return .integer(rows.count)
        }
        if let script = call.script {
            guard call.scriptShards(script, Array(0..<shardSet.count)) != nil else {
                return call.reply(ScriptExecution.foreignKeyError)
            }
            let reply = body()
            if options.store != nil { script.wrote = true }
            return call.reply(reply)
        }
        let sink = call.sink
        call.withEveryShardLent(body, done: { sink.complete($0) })
    }
}
