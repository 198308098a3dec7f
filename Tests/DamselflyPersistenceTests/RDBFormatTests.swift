import Testing
@testable import DamselflyPersistence

/// The format layer on its own: checksum, LZF, listpack, and write → read round trips.
@Suite struct RDBFormatTests {
    @Test func crc64MatchesRedisCheckValue() {
        #expect(CRC64.checksum(b("123456789")) == 0xe9c6_d914_c4b8_d9ca)
        // Redis's crc64 self-test string.
        let li = b("This is a test of the emergency broadcast system. ")
        #expect(CRC64.checksum(li) == CRC64.checksum(li[...]))
        // Slicing-by-8 agrees with byte-at-a-time for every length and split.
        let data = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for cut in 0...data.count {
            #expect(CRC64.update(CRC64.checksum(data[0..<cut]), data[cut...]) == CRC64.checksum(data))
        }
    }

    @Test func lzfExpandsLiteralsAndBackReferences() {
        // 'a', then a back-reference of distance 1 and length 9.
        #expect(LZF.decompress([0x00, 0x61, 0xE0, 0x00, 0x00], expectedLength: 10) == Array(repeating: 0x61, count: 10))
        #expect(LZF.decompress([0x01, 0x61, 0x62, 0x20, 0x01], expectedLength: 5) == b("ababa"))
        // A reference before the start, a short literal, a wrong length: all refused.
        #expect(LZF.decompress([0x20, 0x05], expectedLength: 3) == nil)
        #expect(LZF.decompress([0x05, 0x61], expectedLength: 6) == nil)
        #expect(LZF.decompress([0x00, 0x61], expectedLength: 2) == nil)
    }

    @Test func listpackRoundTripsEveryEntryEncoding() throws {
        let items: [[UInt8]] = [
            "0", "127", "128", "-1", "4095", "-4096", "4096", "32767", "-32768", "8388607", "-8388608",
            "2147483647", "-2147483648", "9223372036854775807", "-9223372036854775808", "", "abc", "-0", "01",
        ].map(b) + [b(String(repeating: "q", count: 63)), b(String(repeating: "r", count: 64)),
                    b(String(repeating: "s", count: 4095)), b(String(repeating: "t", count: 4096)),
                    b(String(repeating: "u", count: 20000))]
        var lp = ListpackBuilder()
        for i in items { lp.append(i) }
        let blob = lp.finish()
        #expect(blob.count == lp.totalBytes)
        #expect(try ListpackDecoder.decode(blob[...], base: 0) == items)
        #expect(ListpackBuilder.backlen(127) == [127])
        #expect(ListpackBuilder.backlen(128) == [1, 128])
        #expect(ListpackBuilder.backlen(20005) == [1, 128 | 28, 128 | 37])
    }

    @Test func integerStringsFollowString2ll() {
        #expect(IntegerString.parse(b("-9223372036854775808")) == Int64.min)
        #expect(IntegerString.parse(b("9223372036854775808")) == nil)
        for bad in ["", "-", "-0", "01", "+1", " 1", "1a", "1.0"] { #expect(IntegerString.parse(b(bad)) == nil) }
    }

    @Test func writerOutputReadsBackExactly() throws {
        let entries = Dataset.entries(nowMs: 1_700_000_000_000)
        let file = Dataset.rdb(entries, extraAux: [("damselfly-placement", "0,1,2,3"), ("empty", "")])
        var reader = RDBReader(bytes: file)
        let read = try reader.readAll()
        #expect(reader.version == 10)
        #expect(reader.aux.map(\.0) == ["redis-ver", "redis-bits", "ctime", "used-mem", "aof-base", "damselfly-placement", "empty"])
        #expect(reader.aux[5].1 == "0,1,2,3")
        #expect(read.count == entries.count)
        for (r, e) in zip(read, entries) {
            #expect(r.database == e.database && r.key == e.key && r.expireAtMs == e.expireAtMs, "\(describe(e))")
            #expect(normalized(r.value) == normalized(e.value), "\(describe(e))")
        }
        // Slicing the output does not change it.
        #expect(Dataset.rdb(entries, extraAux: [("damselfly-placement", "0,1,2,3"), ("empty", "")], sliceBytes: 1)
                    .count == file.count)
    }

    @Test func dumpPayloadRoundTrips() throws {
        for e in Dataset.entries(nowMs: 0) {
            let payload = DumpPayload.encode(e.value)
            #expect(payload[payload.count - 10] == 10 && payload[payload.count - 9] == 0)
            #expect(normalized(try DumpPayload.decode(payload)) == normalized(e.value), "\(describe(e))")
        }
    }

    @Test func trailingDataIsRefusedUnlessAllowed() throws {
        let file = Dataset.rdb([RDBEntry(key: b("k"), value: .string(b("v")))]) + b("*1\r\n$4\r\nPING\r\n")
        var strict = RDBReader(bytes: file)
        #expect(throws: RDBError.self) { try strict.readAll() }
        var preamble = RDBReader(bytes: file, allowTrailingData: true)
        #expect(try preamble.readAll().count == 1)
        #expect(preamble.offset == file.count - 14)
    }
}
