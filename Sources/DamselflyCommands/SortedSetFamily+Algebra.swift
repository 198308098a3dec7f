import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// ZUNION/ZINTER/ZDIFF and their STORE forms.
///
/// Each shard copies out its source keys (sorted sets, or plain sets whose
/// members score 1, as Redis allows); the result is computed on the
/// connection's thread in Redis's order (sources sorted by size, weights
/// applied, NaN sums taken as 0) so floating-point aggregates come out
/// bit-identical; a STORE then writes it on the destination's shard under
/// the same transaction.
extension SortedSetFamily {
    enum SetOp {
        case union, inter, diff
    }

    enum Aggregate {
        case sum, min, max
    }

    /// One source key as a shard saw it.
    enum Source {
        case missing
        case wrongType
        case entries([ZEntry])
    }

    /// Parsed WEIGHTS / AGGREGATE / WITHSCORES.
    struct AlgebraOptions {
        var weights: [Double]
        var aggregate = Aggregate.sum
        var withScores = false
    }

    static func registerAlgebra(_ r: CommandRegistry, group g: String) {
        let ops: [(String, SetOp)] = [("union", .union), ("inter", .inter), ("diff", .diff)]
        r.register("zintercard", arity: -3, flags: [.readonly], group: g, handler: zintercard)
        for (name, op) in ops {
            r.register("z\(name)store", arity: -4, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
                algebra(call, op: op, store: true)
            }
            r.register("z\(name)", arity: -3, flags: [.readonly], group: g) { call in
                algebra(call, op: op, store: false)
            }
        }
    }

    /// ZINTERCARD numkeys key [key ...] [LIMIT limit]: the size of the
    /// intersection, counting stops at a non-zero limit. Redis's order of
    /// errors: numkeys, the keys' types, then the options.
    static func zintercard(_ call: CommandCall) {
        guard let setnum = call.integer(1) else { return call.reply(.notInteger) }
        guard setnum >= 1 else {
            return call.reply(.error("ERR at least 1 input key is needed for 'zintercard' command"))
        }
        guard setnum <= Int64(call.args.count - 2) else { return call.reply(.syntaxError) }
        let n = Int(setnum)
        var limit = 0
        var optionError: Reply? = nil
        var j = 2 + n
        while j < call.args.count {
            if call.args.count - j >= 2 && call.isArg(j, "limit") {
                guard let l = call.integer(j + 1), l >= 0 else {
                    optionError = .error("ERR LIMIT can't be negative")
                    break
                }
                limit = Int(l)
                j += 2
            } else {
                optionError = .syntaxError
                break
            }
        }
        let keys = (2..<(2 + n)).map { call.key($0) }
        let cap = limit, failure = optionError
        call.runOnKeys(keys, mode: .shared, perShard: { ctx, positions in
            positions.map { ($0, readSource(ctx, keys[$0])) }
        }, merge: { parts in
            var sources = [Source](repeating: .missing, count: n)
            for part in parts { for (p, s) in part { sources[p] = s } }
            var inputs: [[ZEntry]] = []
            var anyMissing = false
            for source in sources {
                switch source {
                case .wrongType: return .wrongType
                case .missing: anyMissing = true
                case .entries(let e): inputs.append(e)
                }
            }
            if let failure { return failure }
            if anyMissing { return .integer(0) }
            inputs.sort { $0.count < $1.count }
            let others = inputs.dropFirst().map { Set($0.map(\.member)) }
            var found = 0
            for entry in inputs[0] where others.allSatisfy({ $0.contains(entry.member) }) {
                found += 1
                if cap > 0 && found >= cap { break }
            }
            return .integer(found)
        })
    }

    static func algebra(_ call: CommandCall, op: SetOp, store: Bool) {
        let numkeysIndex = store ? 2 : 1
        guard let setnum = call.integer(numkeysIndex) else { return call.reply(.notInteger) }
        guard setnum >= 1 else {
            return call.reply(.error("ERR at least 1 input key is needed for '\(call.spec.name)' command"))
        }
        guard setnum <= Int64(call.args.count - (numkeysIndex + 1)) else { return call.reply(.syntaxError) }
        let n = Int(setnum)
        // Options are checked only after every source key passed its type
        // check (Redis looks the keys up first), so an error is kept aside.
        var options = AlgebraOptions(weights: [Double](repeating: 1, count: n))
        var optionError: Reply? = nil
        var j = numkeysIndex + 1 + n
        parsing: while j < call.args.count {
            let remaining = call.args.count - j
            if op != .diff && remaining >= n + 1 && call.isArg(j, "weights") {
                j += 1
                for i in 0..<n {
                    guard let w = call.double(j) else {
                        optionError = .error("ERR weight value is not a float")
                        break parsing
                    }
                    options.weights[i] = w
                    j += 1
                }
            } else if op != .diff && remaining >= 2 && call.isArg(j, "aggregate") {
                if call.isArg(j + 1, "sum") { options.aggregate = .sum }
                else if call.isArg(j + 1, "min") { options.aggregate = .min }
                else if call.isArg(j + 1, "max") { options.aggregate = .max }
                else {
                    optionError = .syntaxError
                    break parsing
                }
                j += 2
            } else if !store && call.isArg(j, "withscores") {
                options.withScores = true
                j += 1
            } else {
                optionError = .syntaxError
                break parsing
            }
        }
        let sourceKeys = ((numkeysIndex + 1)..<(numkeysIndex + 1 + n)).map { call.key($0) }
        let opts = options, failure = optionError
        let resp3 = call.client.protocolVersion >= 3
        /// Sources → the result, or the error that wins.
        let compute: ([Source]) -> Result<[ZEntry], ReplyError> = { sources in
            if sources.contains(where: { if case .wrongType = $0 { return true } else { return false } }) {
                return .failure(ReplyError(.wrongType))
            }
            if let failure { return .failure(ReplyError(failure)) }
            return .success(combine(sources, op: op, options: opts))
        }
        if !store {
            call.runOnKeys(sourceKeys, mode: .shared, perShard: { ctx, positions in
                positions.map { ($0, readSource(ctx, sourceKeys[$0])) }
            }, merge: { parts in
                var sources = [Source](repeating: .missing, count: n)
                for part in parts { for (p, s) in part { sources[p] = s } }
                switch compute(sources) {
                case .failure(let e): return e.reply
                case .success(let entries): return scoredReply(entries, withScores: opts.withScores, resp3: resp3)
                }
            })
            return
        }
        let destination = call.key(1)
        let keys = [destination] + sourceKeys
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions -> [(Int, Source)] in
            positions.filter { $0 > 0 }.map { ($0 - 1, readSource(ctx, keys[$0])) }
        }, decide: { checks -> Result<[ZEntry], ReplyError> in
            var sources = [Source](repeating: .missing, count: n)
            for part in checks { for (p, s) in part { sources[p] = s } }
            return compute(sources)
        }, apply: { ctx, positions, decision in
            guard positions.contains(0), case .success(let entries) = decision else { return }
            storeResult(ctx, destination, entries, event: op == .union ? "zunionstore" : op == .inter ? "zinterstore" : "zdiffstore")
        }, reply: { decision in
            switch decision {
            case .failure(let e): return e.reply
            case .success(let entries): return .integer(entries.count)
            }
        }, writtenPositions: [0])
    }

    /// A source key's elements (a plain set's members score 1).
    static func readSource(_ ctx: ShardContext, _ key: KeyRef) -> Source {
        guard let found = ctx.lookupRead(key) else { return .missing }
        switch ctx.database.value(at: found) {
        case .zset(let z): return .entries(z.allEntries)
        case .set(let s):
            var out: [ZEntry] = []
            out.reserveCapacity(s.count)
            s.forEach { out.append(ZEntry(score: 1, member: $0)) }
            return .entries(out)
        default: return .wrongType
        }
    }

    /// Redis's `zunionInterAggregate`.
    static func aggregate(_ target: inout Double, _ value: Double, _ how: Aggregate) {
        switch how {
        case .sum:
            target += value
            if target.isNaN { target = 0 }
        case .min: target = value < target ? value : target
        case .max: target = value > target ? value : target
        }
    }

    /// The result of `op` over `sources` (no wrong types), in set order.
    static func combine(_ sources: [Source], op: SetOp, options: AlgebraOptions) -> [ZEntry] {
        var inputs: [(entries: [ZEntry], weight: Double)] = sources.enumerated().map { i, s in
            if case .entries(let e) = s { return (e, options.weights[i]) }
            return ([], options.weights[i])
        }
        var result: [ZEntry] = []
        switch op {
        case .diff:
            guard let first = inputs.first, !first.entries.isEmpty else { return [] }
            var excluded = Set<ZMemberKey>()
            for input in inputs.dropFirst() { for e in input.entries { excluded.insert(ZMemberKey(e.member)) } }
            result = first.entries.filter { !excluded.contains(ZMemberKey($0.member)) }
            // In order only when the first source is a sorted set; a plain
            // set's members come in hash order (the sort below is linear on
            // sorted input).
        case .inter:
            // Smallest first (stable, as glibc's qsort is for few keys).
            inputs = stableSortedBySize(inputs)
            if inputs[0].entries.isEmpty { return [] }
            let lookups: [[ZMemberKey: Double]] = inputs.dropFirst().map { input in
                var d = [ZMemberKey: Double](minimumCapacity: input.entries.count)
                for e in input.entries { d[ZMemberKey(e.member)] = e.score }
                return d
            }
            outer: for e in inputs[0].entries {
                var score = inputs[0].weight * e.score
                if score.isNaN { score = 0 }
                for (k, lookup) in lookups.enumerated() {
                    guard let other = lookup[ZMemberKey(e.member)] else { continue outer }
                    aggregate(&score, other * inputs[k + 1].weight, options.aggregate)
                }
                result.append(ZEntry(score: score, member: e.member))
            }
        case .union:
            inputs = stableSortedBySize(inputs)
            var index: [ZMemberKey: Int] = [:]
            for input in inputs {
                for e in input.entries {
                    var score = input.weight * e.score
                    if score.isNaN { score = 0 }
                    let key = ZMemberKey(e.member)
                    if let at = index[key] {
                        aggregate(&result[at].score, score, options.aggregate)
                    } else {
                        index[key] = result.count
                        result.append(ZEntry(score: score, member: e.member))
                    }
                }
            }
        }
        result.sort { $0.isBefore($1.score, $1.member) }
        return result
    }

    static func stableSortedBySize(_ inputs: [(entries: [ZEntry], weight: Double)]) -> [(entries: [ZEntry], weight: Double)] {
        inputs.enumerated().sorted { a, b in
            a.element.entries.count != b.element.entries.count
                ? a.element.entries.count < b.element.entries.count : a.offset < b.offset
        }.map { $0.element }
    }
}

/// A member as a hash key for the set algebra (hashes the bytes at once).
struct ZMemberKey: Hashable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
    static func == (a: ZMemberKey, b: ZMemberKey) -> Bool { a.bytes == b.bytes }
}
