import Testing
@testable import DamselflyRESP

@Suite struct CommandArgumentsTests {
    @Test func appendAndRead() {
        let args = CommandArguments()
        let storage: [UInt8] = Array("SeT keyVALUE".utf8)
        storage.withUnsafeBytes { raw in
            args.append(UnsafeRawBufferPointer(rebasing: raw[0..<3]))
            args.append(UnsafeRawBufferPointer(rebasing: raw[4..<7]))
            args.append(UnsafeRawBufferPointer(rebasing: raw[7..<12]))
            args.append(UnsafeRawBufferPointer(start: nil, count: 0))
            #expect(args.count == 4)
            #expect(args.bytes(0) == Array("SeT".utf8))
            #expect(args.string(2) == "VALUE")
            #expect(args[3].count == 0)
            #expect(args.equalsASCIICaseInsensitive(0, "set"))
            #expect(!args.equalsASCIICaseInsensitive(0, "get"))
            #expect(!args.equalsASCIICaseInsensitive(0, "sets"))
            #expect(args.uppercasedName(1) == "KEY")
        }
        args.removeAll()
        #expect(args.count == 0)
    }

    @Test func growsPastInitialCapacity() {
        let args = CommandArguments()
        let storage = [UInt8](0..<200)
        storage.withUnsafeBytes { raw in
            for i in 0..<200 { args.append(UnsafeRawBufferPointer(rebasing: raw[i..<(i + 1)])) }
            #expect(args.count == 200)
            for i in 0..<200 { #expect(args.bytes(i) == [UInt8(i)]) }
        }
    }

    @Test func caseInsensitiveOnlyFoldsLetters() {
        let args = CommandArguments()
        let storage: [UInt8] = Array("A[".utf8)  // '[' is 'A'+26; must not fold to '{'
        storage.withUnsafeBytes { raw in
            args.append(raw)
            #expect(args.equalsASCIICaseInsensitive(0, "a["))
            #expect(!args.equalsASCIICaseInsensitive(0, "a{"))
        }
    }
}
