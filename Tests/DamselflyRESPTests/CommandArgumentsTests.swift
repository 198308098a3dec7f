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

    @Test func aRememberedShardBelongsToTheRememberedHash() {
        let args = CommandArguments()
        #expect(args.rememberedShard(of: 1) == nil)
        // No hash for the argument yet: the shard is not kept.
        args.remember(shard: 3, of: 1)
        #expect(args.rememberedShard(of: 1) == nil)
        args.remember(hash: 42, of: 1)
        #expect(args.rememberedShard(of: 1) == nil)
        args.remember(shard: 3, of: 1)
        #expect(args.rememberedShard(of: 1) == 3)
        #expect(args.rememberedShard(of: 2) == nil)
        args.remember(shard: 5, of: 2)
        #expect(args.rememberedShard(of: 1) == 3)
        // Another argument's hash replaces both; so does the next command.
        args.remember(hash: 7, of: 2)
        #expect(args.rememberedShard(of: 1) == nil)
        #expect(args.rememberedShard(of: 2) == nil)
        args.remember(shard: 0, of: 2)
        #expect(args.rememberedShard(of: 2) == 0)
        args.removeAll()
        #expect(args.rememberedShard(of: 2) == nil)
        #expect(args.rememberedHash(of: 2) == nil)
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
