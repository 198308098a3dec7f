import Testing
@testable import DamselflyPersistence

/// Damaged input is refused with an offset, never loaded in part and never a crash.
@Suite struct CorruptionTests {
    static let small: [RDBEntry] = [
        RDBEntry(key: b("str"), value: .string(b("hello"))),
        RDBEntry(key: b("n"), value: .string(b("1234")), expireAtMs: 1_900_000_000_000),
        RDBEntry(key: b("l"), value: .list([b("a"), b("17"), b("bb")])),
        RDBEntry(key: b("s"), value: .set([b("1"), b("2")])),
        RDBEntry(key: b("ss"), value: .set([b("x"), b("y")])),
        RDBEntry(database: 2, key: b("h"), value: .hash([(b("f"), b("v")), (b("g"), b("300"))])),
        RDBEntry(database: 2, key: b("z"), value: .zset([(b("m"), 1.5), (b("k"), -3)])),
        RDBEntry(database: 2, key: b("zl"), value: .zset((0..<130).map { (b("m\($0)"), Double($0)) })),
    ]

    static func readAll(_ bytes: [UInt8]) throws(RDBError) -> [RDBEntry] {
        var r = RDBReader(bytes: bytes)
        return try r.readAll()
    }

    @Test func everyTruncationFailsWithAnOffset() throws {
        let file = Dataset.rdb(Self.small)
        #expect(try Self.readAll(file).count == Self.small.count)
        for cut in 0..<file.count {
            do {
                _ = try Self.readAll(Array(file[0..<cut]))
                Issue.record("prefix of \(cut) bytes was accepted")
            } catch {
                #expect(error.offset >= 0 && error.offset <= cut, "cut \(cut): \(error)")
            }
        }
    }

    @Test func everyFlippedByteIsAChecksumMismatch() throws {
        let file = Dataset.rdb(Self.small)
        for i in 9..<file.count where i != file.count - 9 {
            var bad = file
            bad[i] ^= 0x5A
            #expect(throws: RDBError.self, "byte \(i)") { try Self.readAll(bad) }
            do { _ = try Self.readAll(bad) } catch {
                guard case .checksumMismatch = error else { Issue.record("byte \(i): \(error)"); continue }
                #expect(error.offset == file.count - 8)
            }
        }
        var noEOF = file
        noEOF[file.count - 9] = 0x00
        #expect(throws: RDBError.self) { try Self.readAll(noEOF) }
        var badMagic = file
        badMagic[0] = UInt8(ascii: "X")
        #expect(throws: RDBError.corrupt(offset: 0, reason: "not an RDB file (no REDIS magic)")) { try Self.readAll(badMagic) }
    }

    /// With the checksum disabled (stored as 0, as `rdbchecksum no` writes), random damage
    /// reaches the structural checks: each must fail cleanly or decode something, never trap.
    @Test func randomDamageWithoutChecksumNeverCrashes() throws {
        var file = Dataset.rdb(Self.small)
        for i in (file.count - 8)..<file.count { file[i] = 0 }
        #expect(try Self.readAll(file).count == Self.small.count)
        var rng = SystemRandomNumberGenerator()
        var failures = 0
        for _ in 0..<4000 {
            var bad = file
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bad[Int.random(in: 9..<(file.count - 9), using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            do { _ = try Self.readAll(bad) } catch {
                failures += 1
                #expect(error.offset >= 0 && error.offset <= bad.count)
            }
        }
        #expect(failures > 0)
    }

    @Test func structuralDamageNamesTheOffset() throws {
        // A hash listpack whose first back-length is wrong, with a valid checksum.
        var w = RDBWriter()
        w.writeHeader(aux: [])
        w.beginDatabase(0, keys: 1, expires: 0)
        w.write(RDBEntry(key: b("h"), value: .hash([(b("f"), b("v"))])))
        var file = w.finish()
        // Layout: 9 header, 2 SELECTDB, 3 RESIZEDB, type, key (2), blob length, listpack.
        let listpack = 9 + 2 + 3 + 1 + 2 + 1
        #expect(file[listpack] == 13 && file[listpack + 6] == 0x81)
        file[listpack + 8] = 7
        let crc = CRC64.checksum(file[0..<(file.count - 8)])
        for i in 0..<8 { file[file.count - 8 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt64(i))) }
        #expect(throws: RDBError.corrupt(offset: listpack + 8, reason: "listpack entry with a wrong back-length")) {
            try Self.readAll(file)
        }
    }

    @Test func dumpPayloadDamageIsRefused() throws {
        let payload = DumpPayload.encode(.zset([(b("a"), 1), (b("b"), 2)]))
        for cut in 0..<payload.count {
            #expect(throws: RDBError.self, "cut \(cut)") { try DumpPayload.decode(Array(payload[0..<cut])) }
        }
        for i in 0..<payload.count {
            var bad = payload
            bad[i] ^= 1
            #expect(throws: RDBError.self, "byte \(i)") { try DumpPayload.decode(bad) }
        }
        var future = payload
        future[future.count - 10] = 12
        let crc = CRC64.checksum(future[0..<(future.count - 8)])
        for i in 0..<8 { future[future.count - 8 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt64(i))) }
        #expect(throws: RDBError.unsupported(offset: payload.count - 10, reason: "DUMP payload of RDB version 12")) {
            try DumpPayload.decode(future)
        }
        // 7.2's version 11: readable in a file, refused in a payload (as Redis 7.0 does).
        future[future.count - 10] = 11
        let crc11 = CRC64.checksum(future[0..<(future.count - 8)])
        for i in 0..<8 { future[future.count - 8 + i] = UInt8(truncatingIfNeeded: crc11 >> (8 * UInt64(i))) }
        #expect(throws: RDBError.self) { try DumpPayload.decode(future) }
    }

    @Test func moduleDataIsRefusedAndATruncatedStreamFails() throws {
        var file = Array("REDIS0010".utf8) + [RDBOpcode.moduleAux, 0]
        file += [RDBOpcode.eof] + [UInt8](repeating: 0, count: 8)
        #expect(throws: RDBError.unsupported(offset: 9, reason: "module aux data")) { try Self.readAll(file) }
        var stream = Array("REDIS0010".utf8) + [RDBType.streamListpacks2, 1, UInt8(ascii: "k")]
        stream += [RDBOpcode.eof] + [UInt8](repeating: 0, count: 8)
        // Streams load (RDBStream.swift); one cut short is an error, not a crash.
        #expect(throws: RDBError.self) { try Self.readAll(stream) }
    }
}
