import DamselflyRESP
import DamselflyStorage

/// LCS (Redis 7.0): the longest common subsequence of two string keys, its
/// length, or the matching ranges.
extension StringFamily {
    public static func registerLCS(_ r: CommandRegistry) {
        r.register("lcs", arity: -3, flags: [.readonly], firstKey: 1, lastKey: 2, keyStep: 1, group: "string", handler: lcs)
    }

    /// LCS's options, parsed after the keys' type check (Redis's order).
    struct LCSOptions {
        var index = false
        var length = false
        var withMatchLength = false
        var minMatchLength = 0
    }

    static func lcs(_ call: CommandCall) {
        var options = LCSOptions()
        var optionError: Reply? = nil
        var j = 3
        while j < call.args.count {
            if call.isArg(j, "idx") {
                options.index = true
            } else if call.isArg(j, "len") {
                options.length = true
            } else if call.isArg(j, "withmatchlen") {
                options.withMatchLength = true
            } else if call.isArg(j, "minmatchlen") && j + 1 < call.args.count {
                guard let n = call.integer(j + 1) else {
                    optionError = .notInteger
                    break
                }
                options.minMatchLength = n < 0 ? 0 : Int(min(n, Int64(Int.max)))
                j += 1
            } else {
                optionError = .syntaxError
                break
            }
            j += 1
        }
        if optionError == nil && options.index && options.length {
            optionError = .error("ERR If you want both the length and indexes, please just use IDX.")
        }
        let keys = [call.key(1), call.key(2)]
        let opts = options, failure = optionError
        let maxTable = call.engine.maxBulkLength
        call.runOnKeys(keys, mode: .shared, perShard: { ctx, positions -> [(Int, [UInt8]?)] in
            // nil: not a string; a missing key reads as "".
            positions.map { p in
                guard let found = ctx.lookupRead(keys[p]) else { return (p, []) }
                return (p, stringBytes(ctx.database.value(at: found)))
            }
        }, merge: { parts in
            var values: [[UInt8]?] = [[], []]
            for part in parts { for (p, v) in part { values[p] = v } }
            guard let a = values[0], let b = values[1] else {
                return .error("ERR The specified keys must contain string values")
            }
            if let failure { return failure }
            let cells = (a.count + 1).multipliedReportingOverflow(by: b.count + 1)
            if cells.overflow || cells.partialValue > maxTable / 4 {
                return .error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
            }
            return lcsReply(a, b, opts)
        })
    }

    /// Redis's dynamic-programming LCS and its walk back from the end, which
    /// decides both the subsequence and the order and bounds of the ranges.
    static func lcsReply(_ a: [UInt8], _ b: [UInt8], _ o: LCSOptions) -> Reply {
        let alen = a.count, blen = b.count
        let width = blen + 1
        var table = [UInt32](repeating: 0, count: (alen + 1) * width)
        if alen > 0 && blen > 0 {
            for i in 1...alen {
                for j in 1...blen {
                    table[i * width + j] = a[i - 1] == b[j - 1]
                        ? table[(i - 1) * width + j - 1] + 1
                        : max(table[(i - 1) * width + j], table[i * width + j - 1])
                }
            }
        }
        let total = Int(table[alen * width + blen])
        if o.length && !o.index { return .integer(total) }
        var result = [UInt8](repeating: 0, count: total)
        var matches: [Reply] = []
        var idx = total
        var i = alen, j = blen
        var aStart = alen, aEnd = 0, bStart = 0, bEnd = 0  // aStart == alen: no range open
        while i > 0 && j > 0 {
            var emit = false
            if a[i - 1] == b[j - 1] {
                result[idx - 1] = a[i - 1]
                if aStart == alen {
                    aStart = i - 1; aEnd = i - 1
                    bStart = j - 1; bEnd = j - 1
                } else if aStart == i && bStart == j {
                    aStart -= 1
                    bStart -= 1
                } else {
                    emit = true
                }
                if aStart == 0 || bStart == 0 { emit = true }
                idx -= 1; i -= 1; j -= 1
            } else {
                if table[(i - 1) * width + j] > table[i * width + j - 1] { i -= 1 } else { j -= 1 }
                if aStart != alen { emit = true }
            }
            if emit {
                let length = aEnd - aStart + 1
                if o.index && (o.minMatchLength == 0 || length >= o.minMatchLength) {
                    var match: [Reply] = [
                        .array([.integer(aStart), .integer(aEnd)]),
                        .array([.integer(bStart), .integer(bEnd)]),
                    ]
                    if o.withMatchLength { match.append(.integer(length)) }
                    matches.append(.array(match))
                }
                aStart = alen
            }
        }
        if o.index {
            return .map([(.bulkString("matches"), .array(matches)), (.bulkString("len"), .integer(total))])
        }
        return .bulk(result)
    }
}
