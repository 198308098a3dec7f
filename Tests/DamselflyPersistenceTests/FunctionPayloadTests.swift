import Testing
@testable import DamselflyPersistence

/// FUNCTION DUMP / RESTORE payloads and the `FUNCTION2` records of RDB files.
@Suite struct FunctionPayloadTests {
    static let lib = Array("#!lua name=lib1\nredis.register_function('f1', function() return 1 end)".utf8)

    @Test func roundTripsLibraries() throws {
        let other = Array(("#!lua name=two\n" + String(repeating: "-- padding\n", count: 50)).utf8)
        let payload = FunctionPayload.encode([Self.lib, other])
        #expect(payload[0] == 245)
        #expect(try FunctionPayload.decode(payload) == [Self.lib, other])
        #expect(try FunctionPayload.decode(FunctionPayload.encode([])) == [])
    }

    @Test func refusesDamagedPayloads() {
        var payload = FunctionPayload.encode([Self.lib])
        payload[5] ^= 1
        #expect(throws: FunctionPayload.Failure.versionOrChecksum) { try FunctionPayload.decode(payload) }
        #expect(throws: FunctionPayload.Failure.versionOrChecksum) { try FunctionPayload.decode([1, 2, 3]) }
        // A key's DUMP payload is not a function payload.
        let keyPayload = DumpPayload.encode(.string(Array("v".utf8)))
        #expect(throws: FunctionPayload.Failure.notAFunction) { try FunctionPayload.decode(keyPayload) }
    }

    /// What redis-server 7.0.15's FUNCTION DUMP gave for one library (its code LZF-compressed).
    @Test func decodesRedisPayload() throws {
        let hex = "f5c3408640911f23216c7561206e616d653d6c6962310a72656469732e72656769737465725f6607756e6374696f6e7bc008005f602a0e"
            + "276631272c2063616c6c6261636b3dc01c1828292072657475726e203120656e642c20666c6167733d7b2720281e6f772d7374616c65"
            + "272c276e6f2d777269746573277d2c20646573637269704064043d2764277d0a00de7647ff80882ad3"
        var bytes: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            bytes.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        let code = "#!lua name=lib1\nredis.register_function{function_name='f1', callback=function() return 1 end, "
            + "flags={'allow-stale','no-writes'}, description='d'}"
        #expect(try FunctionPayload.decode(bytes) == [Array(code.utf8)])
    }

    @Test func snapshotsCarryLibrariesBeforeTheKeys() throws {
        var writer = RDBWriter()
        writer.writeHeader(aux: RDBWriter.standardAux(ctime: 0, usedMemory: 0))
        writer.writeFunctionLibrary(Self.lib)
        writer.beginDatabase(0, keys: 1, expires: 0)
        writer.write(RDBEntry(key: Array("k".utf8), value: .string(Array("v".utf8))))
        var reader = RDBReader(bytes: writer.finish())
        let entries = try reader.readAll()
        #expect(entries.count == 1)
        #expect(reader.functionLibraries == [Self.lib])
    }
}
