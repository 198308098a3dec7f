import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// Bit operations on strings: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP,
/// BITFIELD and BITFIELD_RO.
///
/// Bits are numbered from the most significant bit of the first byte, as in
/// Redis. An integer-encoded string reads as its decimal digits; any write
/// leaves the value `.raw` (Redis's `dbUnshareStringValue` makes it a raw
/// SDS, and OBJECT ENCODING then says "raw").
public enum BitFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "bitmap"
        r.register("setbit", arity: 4, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let offset = bitOffset(call, 2, allowHash: false, bits: 1) else { return call.reply(offsetError) }
            guard let on = call.integer(3), on & ~1 == 0 else {
                return call.reply(.error("ERR bit is not an integer or out of range"))
            }
            let key = call.key(1)
            call.runOnKey(key, mode: .exclusive) { ctx in
                opWrite(ctx, key, highestBit: offset) { bytes, changed in
                    let old = readBits(bytes, offset, 1)
                    writeBits(&bytes, offset, 1, UInt64(on))
                    changed = old != UInt64(on)
                    return .integer(Int(old))
                }
            }
        }
        r.register("getbit", arity: 3, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            guard let offset = bitOffset(call, 2, allowHash: false, bits: 1) else { return call.reply(offsetError) }
            let key = call.key(1)
            call.runOnKey(key, mode: .shared) { ctx in
                opRead(ctx, key, missing: .integer(0)) { bytes in
                    .integer(offset >> 3 < bytes.count ? Int(readBits(bytes, offset, 1)) : 0)
                }
            }
        }
        r.register("bitcount", arity: -2, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: bitcount)
        r.register("bitpos", arity: -3, flags: [.readonly], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: bitpos)
        r.register("bitop", arity: -4, flags: [.write, .denyOOM], firstKey: 2, lastKey: -1, keyStep: 1, group: g, handler: bitop)
        r.register("bitfield", arity: -2, flags: [.write, .denyOOM], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            bitfield(call, readOnlyCommand: false)
        }
        r.register("bitfield_ro", arity: -2, flags: [.readonly, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g) { call in
            bitfield(call, readOnlyCommand: true)
        }
    }

    static let offsetError = Reply.error("ERR bit offset is not an integer or out of range")

    // MARK: - Shared helpers

    /// A string value's bytes (an `.int` as its digits), nil for other types.
    @inlinable
    static func bytes(of value: StoredValue) -> [UInt8]? {
        switch value {
        case .int(let v): return RedisNumber.withDecimalBytes(of: v) { Array($0) }
        case .bytes(let b), .raw(let b): return b
        case .list, .hash, .set, .zset, .stream: return nil
        }
    }

    /// Redis's `getBitOffsetFromArgument`: a non-negative integer whose byte
    /// lies below proto-max-bulk-len; with `allowHash`, "#n" means n × bits.
    static func bitOffset(_ call: CommandCall, _ i: Int, allowHash: Bool, bits: Int) -> Int? {
        let arg = call.args[i]
        let hash = allowHash && arg.count > 0 && arg[0] == UInt8(ascii: "#")
        guard var value = RedisNumber.parseInt64(hash ? UnsafeRawBufferPointer(rebasing: arg[1...]) : arg) else {
            return nil
        }
        if hash {
            let (product, overflow) = value.multipliedReportingOverflow(by: Int64(bits))
            guard !overflow else { return nil }
            value = product
        }
        guard value >= 0, (value >> 3) < Int64(call.engine.maxBulkLength) else { return nil }
        return Int(value)
    }

    /// Runs `body` over the string at `key` for a read; `missing` when absent.
    static func opRead(_ ctx: ShardContext, _ key: KeyRef, missing: Reply, _ body: ([UInt8]) -> Reply) -> Reply {
        guard let found = ctx.lookupRead(key) else { return missing }
        guard let bytes = bytes(of: ctx.database.value(at: found)) else { return .wrongType }
        return body(bytes)
    }

    /// Redis's `lookupStringForBitCommand` then a write: the string is
    /// created or zero-extended to hold bit `highestBit`, handed to `body`
    /// to change in place, and stored back as `.raw`.
    ///
    /// `body` sets its flag when it changed a bit; a write that neither changed
    /// a bit nor created or grew the string is no write for WATCH, blocked
    /// clients and `rdb_changes_since_last_save` (Redis 7.0 counts it so).
    static func opWrite(
        _ ctx: ShardContext, _ key: KeyRef, highestBit: Int, _ body: (inout [UInt8], inout Bool) -> Reply
    ) -> Reply {
        let needed = highestBit >> 3 + 1
        var changed = false
        guard let found = ctx.lookupWrite(key) else {
            var bytes = [UInt8](repeating: 0, count: needed)
            let reply = body(&bytes, &changed)
            ctx.store(key, .raw(bytes))
            ctx.notify(.string, "setbit", key)
            return reply
        }
        guard StoredValue.isStringValue(ctx.database.value(at: found)) else { return .wrongType }
        return ctx.database.modifyValue(at: found) { value in
            var bytes: [UInt8]
            switch value {
            case .int(let v): bytes = RedisNumber.withDecimalBytes(of: v) { Array($0) }
            case .bytes(let b), .raw(let b): bytes = b
            case .list, .hash, .set, .zset, .stream: return .wrongType
            }
            value = .int(0)  // drop our reference so `bytes` is unique
            let grew = bytes.count < needed
            if grew { bytes.append(contentsOf: repeatElement(0, count: needed - bytes.count)) }
            let reply = body(&bytes, &changed)
            value = .raw(bytes)
            if !grew && !changed { ctx.markUnchanged() } else { ctx.notify(.string, "setbit", key) }
            return reply
        }
    }

    /// Bits `offset ..< offset + bits` (MSB first) as an unsigned number;
    /// bits past the end read as 0.
    @inlinable
    static func readBits(_ bytes: [UInt8], _ offset: Int, _ bits: Int) -> UInt64 {
        var value: UInt64 = 0
        var o = offset
        for _ in 0..<bits {
            let byte = o >> 3
            let bit: UInt64 = byte < bytes.count ? UInt64((bytes[byte] >> UInt8(7 - (o & 7))) & 1) : 0
            value = (value << 1) | bit
            o += 1
        }
        return value
    }

    /// Writes the low `bits` bits of `value` at `offset` (MSB first); the
    /// bytes must already be long enough.
    @inlinable
    static func writeBits(_ bytes: inout [UInt8], _ offset: Int, _ bits: Int, _ value: UInt64) {
        var o = offset
        for j in 0..<bits {
            let bit = (value >> UInt64(bits - 1 - j)) & 1
            let byte = o >> 3
            let mask = UInt8(1) << UInt8(7 - (o & 7))
            if bit == 1 { bytes[byte] |= mask } else { bytes[byte] &= ~mask }
            o += 1
        }
    }

    // MARK: - BITCOUNT / BITPOS

    static func bitcount(_ call: CommandCall) {
        // Redis looks the key up before it parses the range: a missing key
        // is 0 and a wrong type wins over a bad range.
        let argc = call.args.count
        let start = argc >= 3 ? call.integer(2) : nil
        let end = argc >= 4 ? call.integer(3) : nil
        let unit: Bool? = argc == 5 ? (call.isArg(4, "bit") ? true : call.isArg(4, "byte") ? false : nil) : false
        let key = call.key(1)
        call.runOnKey(key, mode: .shared) { ctx in
            opRead(ctx, key, missing: .integer(0)) { bytes in
                var first = 0, last = bytes.count * 8 - 1  // bit range, inclusive
                if argc == 4 || argc == 5 {
                    guard let s0 = start, let e0 = end else { return .notInteger }
                    guard let isBit = unit else { return .syntaxError }
                    let total = Int64(isBit ? bytes.count * 8 : bytes.count)
                    var s = s0, e = e0
                    if s < 0 && e < 0 && s > e { return .integer(0) }
                    if s < 0 { s += total }
                    if e < 0 { e += total }
                    if s < 0 { s = 0 }
                    if e < 0 { e = 0 }
                    if e >= total { e = total - 1 }
                    if s > e { return .integer(0) }
                    first = isBit ? Int(s) : Int(s) * 8
                    last = isBit ? Int(e) : Int(e) * 8 + 7
                } else if argc != 2 {
                    return .syntaxError
                }
                if first > last { return .integer(0) }
                return .integer(countBits(bytes, first, last))
            }
        }
    }

    /// Set bits in the inclusive bit range.
    static func countBits(_ bytes: [UInt8], _ first: Int, _ last: Int) -> Int {
        var count = 0
        var bit = first
        while bit <= last && bit & 7 != 0 {
            count += Int(readBits(bytes, bit, 1))
            bit += 1
        }
        bytes.withUnsafeBytes { raw in
            while bit + 63 <= last {
                count += raw.loadUnaligned(fromByteOffset: bit >> 3, as: UInt64.self).nonzeroBitCount
                bit += 64
            }
            while bit + 7 <= last {
                count += raw[bit >> 3].nonzeroBitCount
                bit += 8
            }
        }
        while bit <= last {
            count += Int(readBits(bytes, bit, 1))
            bit += 1
        }
        return count
    }

    static func bitpos(_ call: CommandCall) {
        guard let bit = call.integer(2) else { return call.reply(.notInteger) }
        guard bit == 0 || bit == 1 else { return call.reply(.error("ERR The bit argument must be 1 or 0.")) }
        let argc = call.args.count
        let start = argc >= 4 ? call.integer(3) : nil
        let end = argc >= 5 ? call.integer(4) : nil
        let unit: Bool? = argc == 6 ? (call.isArg(5, "bit") ? true : call.isArg(5, "byte") ? false : nil) : false
        let key = call.key(1)
        let wanted = UInt64(bit)
        call.runOnKey(key, mode: .shared) { ctx in
            opRead(ctx, key, missing: .integer(wanted == 1 ? -1 : 0)) { bytes in
                var first = 0, last = bytes.count * 8 - 1
                var endGiven = false
                if argc >= 4 && argc <= 6 {
                    guard let s0 = start else { return .notInteger }
                    guard let isBit = unit else { return .syntaxError }
                    var total = Int64(bytes.count)
                    var s = s0, e: Int64
                    if argc >= 5 {
                        guard let e0 = end else { return .notInteger }
                        e = e0
                        endGiven = true
                    } else {
                        e = isBit ? (total << 3) + 7 : total - 1
                    }
                    if isBit { total <<= 3 }
                    if s < 0 { s += total }
                    if e < 0 { e += total }
                    if s < 0 { s = 0 }
                    if e < 0 { e = 0 }
                    if e >= total { e = total - 1 }
                    if s > e { return .integer(-1) }
                    first = isBit ? Int(s) : Int(s) * 8
                    last = isBit ? Int(e) : Int(e) * 8 + 7
                } else if argc != 3 {
                    return .syntaxError
                }
                if first > last { return .integer(-1) }
                if let found = findBit(bytes, wanted, first, last) { return .integer(found) }
                // No clear bit in range: without an explicit end the string
                // counts as padded with zeros on the right.
                if wanted == 0 && !endGiven { return .integer((last >> 3 + 1) * 8) }
                return .integer(-1)
            }
        }
    }

    /// First bit equal to `wanted` in the inclusive range.
    static func findBit(_ bytes: [UInt8], _ wanted: UInt64, _ first: Int, _ last: Int) -> Int? {
        var bit = first
        let skip: UInt8 = wanted == 1 ? 0 : 0xFF
        while bit <= last {
            if bit & 7 == 0 && bit + 7 <= last && bytes[bit >> 3] == skip {
                bit += 8
                continue
            }
            if readBits(bytes, bit, 1) == wanted { return bit }
            bit += 1
        }
        return nil
    }

    // MARK: - BITOP

    enum BitOp {
        case and, or, xor, not
    }

    /// A BITOP source as its shard saw it.
    enum BitSource {
        case missing
        case wrongType
        case bytes([UInt8])
    }

    static func bitop(_ call: CommandCall) {
        let op: BitOp
        if call.isArg(1, "and") { op = .and }
        else if call.isArg(1, "or") { op = .or }
        else if call.isArg(1, "xor") { op = .xor }
        else if call.isArg(1, "not") { op = .not }
        else { return call.reply(.syntaxError) }
        if op == .not && call.args.count != 4 {
            return call.reply(.error("ERR BITOP NOT must be called with a single source key."))
        }
        let keys = (2..<call.args.count).map { call.key($0) }
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions -> [(Int, BitSource)] in
            positions.filter { $0 > 0 }.map { p in
                guard let found = ctx.lookupRead(keys[p]) else { return (p - 1, .missing) }
                guard let b = bytes(of: ctx.database.value(at: found)) else { return (p - 1, .wrongType) }
                return (p - 1, .bytes(b))
            }
        }, decide: { checks -> [UInt8]? in
            var sources = [BitSource](repeating: .missing, count: keys.count - 1)
            for part in checks { for (p, s) in part { sources[p] = s } }
            var inputs: [[UInt8]] = []
            for s in sources {
                switch s {
                case .wrongType: return nil
                case .missing: inputs.append([])
                case .bytes(let b): inputs.append(b)
                }
            }
            return combine(op, inputs)
        }, apply: { ctx, positions, result in
            guard positions.contains(0), let result else { return }
            if result.isEmpty {
                if ctx.delete(keys[0]) { ctx.notify(.generic, "del", keys[0]) }
            } else {
                ctx.store(keys[0], .raw(result))
                ctx.notify(.string, "set", keys[0])
            }
        }, reply: { result in
            guard let result else { return .wrongType }
            return .integer(result.count)
        }, writtenPositions: [0])
    }

    /// BITOP over the inputs; shorter inputs are padded with zero bytes.
    static func combine(_ op: BitOp, _ inputs: [[UInt8]]) -> [UInt8] {
        let length = inputs.map(\.count).max() ?? 0
        if length == 0 { return [] }
        if op == .not { return inputs[0].map { ~$0 } }
        var out = inputs[0] + [UInt8](repeating: 0, count: length - inputs[0].count)
        for input in inputs.dropFirst() {
            for i in 0..<length {
                let b: UInt8 = i < input.count ? input[i] : 0
                switch op {
                case .and: out[i] &= b
                case .or: out[i] |= b
                case .xor: out[i] ^= b
                case .not: break
                }
            }
        }
        return out
    }

    // MARK: - BITFIELD

    enum Overflow {
        case wrap, sat, fail
    }

    struct FieldOp {
        enum Kind { case get, set, incrby }
        var kind: Kind
        var signed: Bool
        var bits: Int
        var offset: Int
        var value: Int64
        var overflow: Overflow
    }

    static let typeError = Reply.error(
        "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")

    /// Redis's `getBitfieldTypeFromArgument`.
    static func fieldType(_ call: CommandCall, _ i: Int) -> (signed: Bool, bits: Int)? {
        let arg = call.args[i]
        guard arg.count >= 2 else { return nil }
        let signed: Bool
        switch arg[0] {
        case UInt8(ascii: "i"), UInt8(ascii: "I"): signed = true
        case UInt8(ascii: "u"), UInt8(ascii: "U"): signed = false
        default: return nil
        }
        guard let bits = RedisNumber.parseInt64(UnsafeRawBufferPointer(rebasing: arg[1...])), bits >= 1,
            bits <= (signed ? 64 : 63)
        else { return nil }
        return (signed, Int(bits))
    }

    static func bitfield(_ call: CommandCall, readOnlyCommand: Bool) {
        var ops: [FieldOp] = []
        var overflow = Overflow.wrap
        var readOnly = true
        var highest = 0
        var j = 2
        while j < call.args.count {
            let remaining = call.args.count - j - 1
            let kind: FieldOp.Kind
            if call.isArg(j, "get") && remaining >= 2 { kind = .get }
            else if call.isArg(j, "set") && remaining >= 3 { kind = .set }
            else if call.isArg(j, "incrby") && remaining >= 3 { kind = .incrby }
            else if call.isArg(j, "overflow") && remaining >= 1 {
                if call.isArg(j + 1, "wrap") { overflow = .wrap }
                else if call.isArg(j + 1, "sat") { overflow = .sat }
                else if call.isArg(j + 1, "fail") { overflow = .fail }
                else { return call.reply(.error("ERR Invalid OVERFLOW type specified")) }
                j += 2
                continue
            } else {
                return call.reply(.syntaxError)
            }
            guard let (signed, bits) = fieldType(call, j + 1) else { return call.reply(typeError) }
            guard let offset = bitOffset(call, j + 2, allowHash: true, bits: bits) else { return call.reply(offsetError) }
            var value: Int64 = 0
            if kind != .get {
                readOnly = false
                guard let v = call.integer(j + 3) else { return call.reply(.notInteger) }
                value = v
                highest = Swift.max(highest, offset + bits - 1)
            }
            ops.append(FieldOp(kind: kind, signed: signed, bits: bits, offset: offset, value: value, overflow: overflow))
            j += kind == .get ? 3 : 4
        }
        if !readOnly && readOnlyCommand {
            return call.reply(.error("ERR BITFIELD_RO only supports the GET subcommand"))
        }
        let key = call.key(1)
        let fieldOps = ops
        if readOnly {
            call.runOnKey(key, mode: .shared) { ctx in
                opRead(ctx, key, missing: .array(fieldOps.map { getReply([], $0) })) { bytes in
                    .array(fieldOps.map { getReply(bytes, $0) })
                }
            }
            return
        }
        call.runOnKey(key, mode: .exclusive) { ctx in
            opWrite(ctx, key, highestBit: highest) { bytes, changed in
                .array(fieldOps.map { op in
                    switch op.kind {
                    case .get: return getReply(bytes, op)
                    case .set, .incrby: return apply(&bytes, op, changed: &changed)
                    }
                })
            }
        }
    }

    static func getReply(_ bytes: [UInt8], _ op: FieldOp) -> Reply {
        let raw = readBits(bytes, op.offset, op.bits)
        return .integer(Int(op.signed ? signExtend(raw, op.bits) : Int64(bitPattern: raw)))
    }

    @inlinable
    static func signExtend(_ raw: UInt64, _ bits: Int) -> Int64 {
        if bits < 64 && raw & (UInt64(1) << UInt64(bits - 1)) != 0 {
            return Int64(bitPattern: raw | (UInt64.max << UInt64(bits)))
        }
        return Int64(bitPattern: raw)
    }

    /// SET or INCRBY, with Redis's overflow checks and replies. `changed`: an
    /// INCRBY that ran, or a SET that wrote other bits (as Redis counts them).
    static func apply(_ bytes: inout [UInt8], _ op: FieldOp, changed: inout Bool) -> Reply {
        let raw = readBits(bytes, op.offset, op.bits)
        if op.signed {
            let old = signExtend(raw, op.bits)
            var newValue: Int64, reply: Int64
            let overflowed: Bool
            if op.kind == .incrby {
                let (o, wrapped) = signedOverflow(old, op.value, op.bits, op.overflow)
                overflowed = o
                newValue = o ? wrapped : old &+ op.value
                reply = newValue
            } else {
                let (o, wrapped) = signedOverflow(op.value, 0, op.bits, op.overflow)
                overflowed = o
                newValue = o ? wrapped : op.value
                reply = old
            }
            if overflowed && op.overflow == .fail { return .null }
            writeBits(&bytes, op.offset, op.bits, UInt64(bitPattern: newValue))
            if op.kind == .incrby || readBits(bytes, op.offset, op.bits) != raw { changed = true }
            return .integer(Int(reply))
        }
        let old = raw
        var newValue: UInt64, reply: UInt64
        let overflowed: Bool
        if op.kind == .incrby {
            let (o, wrapped) = unsignedOverflow(old, op.value, op.bits, op.overflow)
            overflowed = o
            newValue = o ? wrapped : old &+ UInt64(bitPattern: op.value)
            reply = newValue
        } else {
            let (o, wrapped) = unsignedOverflow(UInt64(bitPattern: op.value), 0, op.bits, op.overflow)
            overflowed = o
            newValue = o ? wrapped : UInt64(bitPattern: op.value)
            reply = old
        }
        if overflowed && op.overflow == .fail { return .null }
        writeBits(&bytes, op.offset, op.bits, newValue)
        if op.kind == .incrby || readBits(bytes, op.offset, op.bits) != raw { changed = true }
        return .integer(Int(Int64(bitPattern: reply)))
    }

    /// Redis's `checkSignedBitfieldOverflow`: whether `value + incr`
    /// overflows a signed field of `bits`, and the wrapped or saturated value.
    static func signedOverflow(_ value: Int64, _ incr: Int64, _ bits: Int, _ how: Overflow) -> (Bool, Int64) {
        let max: Int64 = bits == 64 ? Int64.max : (Int64(1) << Int64(bits - 1)) - 1
        let min: Int64 = -max - 1
        let maxIncr = Int64(bitPattern: UInt64(bitPattern: max) &- UInt64(bitPattern: value))
        let minIncr = min &- value
        func wrap() -> Int64 {
            let msb = UInt64(1) << UInt64(bits - 1)
            var c = UInt64(bitPattern: value) &+ UInt64(bitPattern: incr)
            if bits < 64 {
                let mask = UInt64.max << UInt64(bits)
                if c & msb != 0 { c |= mask } else { c &= ~mask }
            }
            return Int64(bitPattern: c)
        }
        if value > max || (bits != 64 && incr > maxIncr) || (value >= 0 && incr > 0 && incr > maxIncr) {
            return (true, how == .wrap ? wrap() : max)
        }
        if value < min || (bits != 64 && incr < minIncr) || (value < 0 && incr < 0 && incr < minIncr) {
            return (true, how == .wrap ? wrap() : min)
        }
        return (false, 0)
    }

    /// Redis's `checkUnsignedBitfieldOverflow`.
    static func unsignedOverflow(_ value: UInt64, _ incr: Int64, _ bits: Int, _ how: Overflow) -> (Bool, UInt64) {
        let max: UInt64 = bits == 64 ? UInt64.max : (UInt64(1) << UInt64(bits)) - 1
        let maxIncr = Int64(bitPattern: max &- value)
        let minIncr = Int64(bitPattern: 0 &- value)
        func wrap() -> UInt64 {
            let mask = bits == 64 ? 0 : UInt64.max << UInt64(bits)
            return (value &+ UInt64(bitPattern: incr)) & ~mask
        }
        if value > max || (incr > 0 && incr > maxIncr) {
            return (true, how == .wrap ? wrap() : max)
        }
        if incr < 0 && incr < minIncr {
            return (true, how == .wrap ? wrap() : 0)
        }
        return (false, 0)
    }
}

extension StoredValue {
    /// Whether a value is a string (this family's only type).
    @inlinable
    static func isStringValue(_ value: StoredValue) -> Bool {
        switch value {
        case .int, .bytes, .raw: return true
        case .list, .hash, .set, .zset, .stream: return false
        }
    }
}
