// MARK: - Writing primitives

/// Appends RDB primitives and whole values to a byte buffer; shared by ``RDBWriter`` and
/// ``DumpPayload`` so a snapshot and a DUMP serialize a value identically.
enum RDBEncoder {
    static func appendLength(_ out: inout [UInt8], _ n: UInt64) {
        if n < (1 << 6) {
            out.append(UInt8(n))
        } else if n < (1 << 14) {
            out.append(0x40 | UInt8(n >> 8))
            out.append(UInt8(n & 0xff))
        } else if n <= UInt64(UInt32.max) {
            out.append(0x80)
            for i in (0..<4).reversed() { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        } else {
            out.append(0x81)
            for i in (0..<8).reversed() { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        }
    }

    static func appendLength(_ out: inout [UInt8], _ n: Int) { appendLength(&out, UInt64(n)) }

    /// A string object; canonical integers in the int32 range use the integer encodings
    /// (as Redis's `rdbTryIntegerEncoding`), everything else is stored raw.
    static func appendString(_ out: inout [UInt8], _ s: [UInt8]) {
        if s.count <= 11, let v = IntegerString.parse(s) {
            if v >= Int64(Int8.min), v <= Int64(Int8.max) {
                out.append(0xC0)
                out.append(UInt8(bitPattern: Int8(v)))
                return
            }
            if v >= Int64(Int16.min), v <= Int64(Int16.max) {
                out.append(0xC1)
                appendLE(&out, UInt64(bitPattern: v), 2)
                return
            }
            if v >= Int64(Int32.min), v <= Int64(Int32.max) {
                out.append(0xC2)
                appendLE(&out, UInt64(bitPattern: v), 4)
                return
            }
        }
        appendLength(&out, s.count)
        out.append(contentsOf: s)
    }

    static func appendRaw(_ out: inout [UInt8], _ s: [UInt8]) {
        appendLength(&out, s.count)
        out.append(contentsOf: s)
    }

    /// The type Redis 7.0 would save `value` as, given its default encoding thresholds.
    static func type(of value: RDBValue) -> UInt8 {
        switch value {
        case .string: return RDBType.string
        case .list: return RDBType.listQuicklist2
        case let .set(members):
            return intsetValues(members) != nil ? RDBType.setIntset : RDBType.set
        case let .hash(pairs):
            let small = pairs.count <= RDBLimits.hashMaxListpackEntries && pairs.allSatisfy {
                $0.0.count <= RDBLimits.hashMaxListpackValue && $0.1.count <= RDBLimits.hashMaxListpackValue
            }
            return small ? RDBType.hashListpack : RDBType.hash
        case let .zset(pairs):
            let small = pairs.count <= RDBLimits.zsetMaxListpackEntries
                && pairs.allSatisfy { $0.0.count <= RDBLimits.zsetMaxListpackValue }
            return small ? RDBType.zsetListpack : RDBType.zset2
        case .stream: return RDBType.streamListpacks2
        }
    }

    /// The members as sorted unique integers if the set qualifies for an intset.
    static func intsetValues(_ members: [[UInt8]]) -> [Int64]? {
        guard !members.isEmpty, members.count <= RDBLimits.setMaxIntsetEntries else { return nil }
        var values = [Int64]()
        values.reserveCapacity(members.count)
        for m in members {
            guard let v = IntegerString.parse(m) else { return nil }
            values.append(v)
        }
        values.sort()
        var unique = [Int64]()
        unique.reserveCapacity(values.count)
        for v in values where unique.last != v { unique.append(v) }
        return unique
    }

    /// Appends the value (without its type byte) in the encoding ``type(of:)`` chose.
    static func appendValue(_ out: inout [UInt8], _ value: RDBValue, type: UInt8) {
        switch value {
        case let .string(s):
            appendString(&out, s)
        case let .list(items):
            appendQuicklist(&out, items)
        case let .set(members):
            if type == RDBType.setIntset, let values = intsetValues(members) {
                appendRaw(&out, IntsetDecoder.encode(values))
            } else {
                appendLength(&out, members.count)
                for m in members { appendString(&out, m) }
            }
        case let .hash(pairs):
            if type == RDBType.hashListpack {
                var lp = ListpackBuilder()
                for (f, v) in pairs { lp.append(f); lp.append(v) }
                appendRaw(&out, lp.finish())
            } else {
                appendLength(&out, pairs.count)
                for (f, v) in pairs { appendString(&out, f); appendString(&out, v) }
            }
        case let .zset(pairs):
            if type == RDBType.zsetListpack {
                // A listpack zset must be in (score, member) order: Redis relies on it.
                let sorted = pairs.sorted {
                    $0.1 != $1.1 ? $0.1 < $1.1 : $0.0.lexicographicallyPrecedes($1.0)
                }
                var lp = ListpackBuilder()
                for (m, score) in sorted { lp.append(m); lp.append(renderScore(score)) }
                appendRaw(&out, lp.finish())
            } else {
                appendLength(&out, pairs.count)
                for (m, score) in pairs {
                    appendString(&out, m)
                    appendLE(&out, score.bitPattern, 8)
                }
            }
        case let .stream(stream):
            appendStream(&out, stream)
        }
    }

    /// `LIST_QUICKLIST_2`: node count, then per node its container (2 packed, 1 plain) and
    /// a listpack of at most 8 KiB (or, for a huge element, the element itself).
    static func appendQuicklist(_ out: inout [UInt8], _ items: [[UInt8]]) {
        var nodes = [(plain: Bool, bytes: [UInt8])]()
        var lp = ListpackBuilder()
        for item in items {
            if item.count >= RDBLimits.listPlainThreshold {
                if lp.count > 0 { nodes.append((false, lp.finish())); lp = ListpackBuilder() }
                nodes.append((true, item))
                continue
            }
            if lp.count > 0, lp.totalBytes + ListpackBuilder.entrySize(item) > RDBLimits.listMaxListpackBytes {
                nodes.append((false, lp.finish()))
                lp = ListpackBuilder()
            }
            lp.append(item)
        }
        if lp.count > 0 { nodes.append((false, lp.finish())) }
        appendLength(&out, nodes.count)
        for node in nodes {
            appendLength(&out, node.plain ? RDBLimits.quicklistPlain : RDBLimits.quicklistPacked)
            appendRaw(&out, node.bytes)
        }
    }
}
