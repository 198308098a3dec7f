import DamselflyRESP
import DamselflyStorage
import DamselflyTransactions

/// HyperLogLog commands: PFADD, PFCOUNT, PFMERGE, PFDEBUG and PFSELFTEST.
///
/// An HLL is an ordinary string holding Redis's exact bytes
/// (``HyperLogLog``), so GET, DUMP/RESTORE and snapshots interchange with
/// redis-server. Like Redis's `dbUnshareStringValue`, every command that may
/// change one leaves it `.raw`.
public enum HyperLogLogFamily {
    public static func register(_ r: CommandRegistry) {
        let g = "hyperloglog"
        r.register("pfadd", arity: -2, flags: [.write, .denyOOM, .fast], firstKey: 1, lastKey: 1, keyStep: 1, group: g, handler: pfadd)
        r.register("pfcount", arity: -2, flags: [.readonly], firstKey: 1, lastKey: -1, keyStep: 1, group: g, handler: pfcount)
        r.register("pfmerge", arity: -2, flags: [.write, .denyOOM], firstKey: 1, lastKey: -1, keyStep: 1, group: g, handler: pfmerge)
        r.register("pfdebug", arity: 3, flags: [.write, .denyOOM, .admin], firstKey: 2, lastKey: 2, keyStep: 1, group: g, handler: pfdebug)
        r.register("pfselftest", arity: 1, flags: [.admin], group: g) { call in
            call.reply(HyperLogLog.selfTest().map { .error($0) } ?? .ok)
        }
    }

    static let notHLL = Reply.error("WRONGTYPE Key is not a valid HyperLogLog string value.")
    static let corrupted = Reply.error("INVALIDOBJ Corrupted HLL object detected")

    static var sparseMaxBytes: Int { EncodingLimits.hllSparseMaxBytes.load(ordering: .relaxed) }

    /// What a key holds, as Redis's `isHLLObjectOrReply` sees it.
    enum Source {
        case missing
        case hll([UInt8])
        /// The reply that ends the command (another type, a string that is no HLL).
        case refused(Reply)
    }

    static func source(_ ctx: ShardContext, _ found: EntryIndex?) -> Source {
        guard let found else { return .missing }
        switch ctx.database.value(at: found) {
        case .bytes(let b), .raw(let b): return HyperLogLog.isValid(b) ? .hll(b) : .refused(notHLL)
        case .int: return .refused(notHLL)
        case .list, .hash, .set, .zset, .stream: return .refused(.wrongType)
        }
    }

    /// Runs `body` over the bytes of the HLL at `found`, owned uniquely (the
    /// value is swapped out of the table meanwhile), then stores them back
    /// `.raw`. A value that is not an HLL is left alone and refused.
    static func modifyHLL(_ ctx: ShardContext, _ found: EntryIndex, _ body: (inout [UInt8]) -> Reply) -> Reply {
        if case .refused(let reply) = source(ctx, found) { return reply }
        return ctx.database.modifyValue(at: found) { value in
            guard case .bytes(var bytes) = value else {
                guard case .raw(var bytes) = value else { return .wrongType }
                value = .int(0)
                defer { value = .raw(bytes) }
                return body(&bytes)
            }
            value = .int(0)
            defer { value = .raw(bytes) }
            return body(&bytes)
        }
    }

    // MARK: - PFADD

    static func pfadd(_ call: CommandCall) {
        let key = call.key(1)
        let elements = (2..<call.args.count).map { call.args.bytes($0) }
        call.runOnKey(key, mode: .exclusive) { ctx in
            let limit = sparseMaxBytes
            var updated = 0
            var failed = false
            let add: (inout [UInt8]) -> Reply = { bytes in
                for element in elements {
                    switch element.withUnsafeBytes({ HyperLogLog.add(&bytes, $0, sparseMaxBytes: limit) }) {
                    case .updated: updated += 1
                    case .unchanged: break
                    case .corrupted: failed = true; return corrupted
                    }
                }
                if updated > 0 { HyperLogLog.invalidateCache(&bytes) }
                return .integer(updated > 0 ? 1 : 0)
            }
            let reply: Reply
            if let found = ctx.lookupWrite(key) {
                reply = modifyHLL(ctx, found, add)
            } else {
                var bytes = HyperLogLog.empty()
                updated = 1
                reply = add(&bytes)
                ctx.store(key, .raw(bytes))
            }
            if failed || updated == 0 {
                if !failed { ctx.markUnchanged() }
            } else if updated > 1 {
                // Redis counts every register raised toward the next save.
                ctx.shard.changesSinceSave.addOwned(updated - 1)
            }
            if !failed && updated > 0 { ctx.notify(.string, "pfadd", key) }
            return reply
        }
    }

    // MARK: - PFCOUNT

    /// One shard's part of PFCOUNT or PFMERGE over several keys: the
    /// registers of its keys merged, whether one was dense, and the first
    /// failure (argument position and reply), which wins only if no key
    /// before it failed on another shard.
    struct Partial {
        var registers: [UInt8]?
        var sawDense = false
        var failure: (position: Int, reply: Reply)?
    }

    static func gather(_ ctx: ShardContext, _ keys: [KeyRef], _ positions: [Int]) -> Partial {
        var partial = Partial()
        for p in positions.sorted() {
            switch source(ctx, ctx.lookupRead(keys[p])) {
            case .missing: continue
            case .refused(let reply):
                partial.failure = (p, reply)
                return partial
            case .hll(let bytes):
                if !HyperLogLog.isSparse(bytes) { partial.sawDense = true }
                if partial.registers == nil { partial.registers = [UInt8](repeating: 0, count: HyperLogLog.registerCount) }
                guard HyperLogLog.merge(into: &partial.registers!, bytes) else {
                    partial.failure = (p, corrupted)
                    return partial
                }
            }
        }
        return partial
    }

    /// The shards' parts combined: the registers' maxima, or the failure of
    /// the earliest key, as Redis meets the keys in argument order.
    static func combine(_ parts: [Partial]) -> Result<(registers: [UInt8], dense: Bool), ReplyError> {
        if let failure = parts.compactMap(\.failure).min(by: { $0.position < $1.position }) {
            return .failure(ReplyError(reply: failure.reply))
        }
        var registers = [UInt8](repeating: 0, count: HyperLogLog.registerCount)
        for part in parts {
            guard let theirs = part.registers else { continue }
            for i in 0..<registers.count where theirs[i] > registers[i] { registers[i] = theirs[i] }
        }
        return .success((registers, parts.contains { $0.sawDense }))
    }

    struct ReplyError: Error {
        let reply: Reply
    }

    static func pfcount(_ call: CommandCall) {
        guard call.args.count == 2 else {
            let keys = (1..<call.args.count).map { call.key($0) }
            call.runOnKeys(keys, mode: .shared, perShard: { ctx, positions in
                gather(ctx, keys, positions)
            }, merge: { parts in
                switch combine(parts) {
                case .failure(let error): return error.reply
                case .success(let merged): return .integer(Int(HyperLogLog.count(registers: merged.registers)))
                }
            })
            return
        }
        let key = call.key(1)
        call.runOnKey(key, mode: .exclusive) { ctx in
            guard let found = ctx.lookupRead(key) else { return .integer(0) }
            var refreshed = false
            let reply = modifyHLL(ctx, found) { bytes in
                if let card = HyperLogLog.cachedCardinality(bytes) { return .integer(Int(truncatingIfNeeded: card)) }
                guard let card = HyperLogLog.count(bytes) else { return corrupted }
                HyperLogLog.setCachedCardinality(&bytes, card)
                refreshed = true
                return .integer(Int(truncatingIfNeeded: card))
            }
            if refreshed {
                // Storing the estimate is a write, as in Redis: WATCHers see
                // it, the save counter counts it, the journal replays it.
                ctx.shard.noteWritten([lockFingerprint(keyHash: key.hash, database: ctx.databaseIndex)])
                ctx.journal([Array("PFCOUNT".utf8), key.bytes])
            }
            return reply
        }
    }

    // MARK: - PFMERGE

    static func pfmerge(_ call: CommandCall) {
        // The destination is also the first source.
        let keys = (1..<call.args.count).map { call.key($0) }
        call.runOnKeysTwoPhase(keys, mode: .exclusive, check: { ctx, positions in
            gather(ctx, keys, positions)
        }, decide: { parts in
            combine(parts)
        }, apply: { ctx, positions, decision in
            guard positions.contains(0), case .success(let merged) = decision else {
                ctx.markUnchanged()
                return
            }
            let limit = sparseMaxBytes
            let write: (inout [UInt8]) -> Reply = { bytes in
                if merged.dense { _ = HyperLogLog.toDense(&bytes) }
                HyperLogLog.raiseRegisters(&bytes, to: merged.registers, sparseMaxBytes: limit)
                HyperLogLog.invalidateCache(&bytes)
                return .ok
            }
            if let found = ctx.lookupWrite(keys[0]) {
                _ = modifyHLL(ctx, found, write)
            } else {
                var bytes = HyperLogLog.empty()
                _ = write(&bytes)
                ctx.store(keys[0], .raw(bytes))
            }
            // Redis sends PFMERGE's write as a `pfadd` (a mass add, in its words).
            ctx.notify(.string, "pfadd", keys[0])
        }, reply: { decision in
            switch decision {
            case .failure(let error): return error.reply
            case .success: return .ok
            }
        }, writtenPositions: [0])
    }

    // MARK: - PFDEBUG

    static func pfdebug(_ call: CommandCall) {
        let sub = call.args.string(1)
        enum Sub { case getreg, decode, encoding, todense, unknown }
        let kind: Sub = call.isArg(1, "getreg") ? .getreg : call.isArg(1, "decode") ? .decode
            : call.isArg(1, "encoding") ? .encoding : call.isArg(1, "todense") ? .todense : .unknown
        let key = call.key(2)
        call.runOnKey(key, mode: .exclusive) { ctx in
            guard let found = ctx.lookupWrite(key) else { return .error("ERR The specified key does not exist") }
            var converted = false
            let reply = modifyHLL(ctx, found) { bytes in
                switch kind {
                case .getreg, .todense:
                    if HyperLogLog.isSparse(bytes) {
                        guard HyperLogLog.toDense(&bytes) else { return corrupted }
                        converted = true
                    }
                    if kind == .todense { return .integer(converted ? 1 : 0) }
                    return .array((0..<HyperLogLog.registerCount).map {
                        .integer(Int(HyperLogLog.denseRegister(bytes, $0)))
                    })
                case .decode:
                    guard HyperLogLog.isSparse(bytes) else { return .error("ERR HLL encoding is not sparse") }
                    return .bulkString(HyperLogLog.decode(bytes))
                case .encoding:
                    return .simple(HyperLogLog.isSparse(bytes) ? "sparse" : "dense")
                case .unknown:
                    return .error("ERR Unknown PFDEBUG subcommand '\(sub)'")
                }
            }
            // Only a change of encoding counts as a write (Redis's dirty++).
            if !converted { ctx.markUnchanged() }
            return reply
        }
    }
}
