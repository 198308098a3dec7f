import Testing
@testable import DamselflyStorage

/// ``HyperLogLog``: the expected registers, bytes and estimates were read
/// from redis-server 7.0.15 (PFDEBUG DECODE, GET, PFCOUNT) after the same adds.
@Suite struct HyperLogLogTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    func adding(_ elements: [String], to start: [UInt8] = HyperLogLog.empty(), limit: Int = 3000) -> [UInt8] {
        var hll = start
        for e in elements { _ = b(e).withUnsafeBytes { HyperLogLog.add(&hll, $0, sparseMaxBytes: limit) } }
        return hll
    }

    @Test func registerAndRunLengthMatchRedis() {
        let expected: [(String, Int, UInt8)] = [
            ("a", 12711, 2), ("", 5938, 2), ("abcdefgh", 1383, 1), ("abcdefghi", 6903, 1), ("hello world", 9399, 4),
        ]
        for (element, index, count) in expected {
            let got = b(element).withUnsafeBytes { HyperLogLog.patternLength($0) }
            #expect(got.index == index && got.count == count, "\(element)")
        }
    }

    @Test func emptyIsOneXZeroWithValidZeroCache() {
        let hll = HyperLogLog.empty()
        #expect(hll.count == 18 && HyperLogLog.isValid(hll) && HyperLogLog.isSparse(hll))
        #expect(HyperLogLog.cachedCardinality(hll) == 0)
        #expect(HyperLogLog.decode(hll) == "Z:16384")
        #expect(HyperLogLog.count(hll) == 0)
    }

    @Test func sparseBytesEqualRedis() {
        let hll = adding(["a", "b", "c"])
        let hex = hll.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        #expect(hex == "48594c4c01000000000000000000008060f38050b1844bfb80425a")
        #expect(HyperLogLog.decode(hll) == "Z:8436 v:1,1 Z:4274 v:2,1 Z:3068 v:1,1 Z:603")
        #expect(HyperLogLog.cachedCardinality(hll) == nil)
    }

    @Test func estimatesEqualRedis() {
        let hundred = adding((0..<100).map { "e\($0)" })
        #expect(HyperLogLog.count(hundred) == 100)
        let thousand = adding((0..<1000).map { "e\($0)" })
        #expect(HyperLogLog.isSparse(thousand) && HyperLogLog.count(thousand) == 1008)
        let many = adding((0..<100_000).map { "e\($0)" })
        #expect(!HyperLogLog.isSparse(many) && many.count == HyperLogLog.denseSize)
        #expect(HyperLogLog.count(many) == 100_853)
    }

    @Test func sparseTurnsDenseAtTheLimitAndKeepsItsRegisters() {
        let elements = (0..<400).map { "x\($0)" }
        var sparse = adding(elements, limit: Int.max)
        let dense = adding(elements, limit: 200)
        #expect(HyperLogLog.isSparse(sparse) && sparse.count > 200)
        #expect(!HyperLogLog.isSparse(dense))
        #expect(HyperLogLog.count(sparse) == HyperLogLog.count(dense))
        #expect(HyperLogLog.toDense(&sparse))
        for r in stride(from: 0, to: HyperLogLog.registerCount, by: 7) {
            #expect(HyperLogLog.denseRegister(sparse, r) == HyperLogLog.denseRegister(dense, r))
        }
    }

    @Test func mergeTakesTheMaximumOfBothEncodings() {
        let left = adding((0..<300).map { "l\($0)" })
        var right = adding((0..<300).map { "r\($0)" })
        _ = HyperLogLog.toDense(&right)
        var registers = [UInt8](repeating: 0, count: HyperLogLog.registerCount)
        #expect(HyperLogLog.merge(into: &registers, left) && HyperLogLog.merge(into: &registers, right))
        let both = adding((0..<300).map { "l\($0)" } + (0..<300).map { "r\($0)" })
        #expect(HyperLogLog.count(registers: registers) == HyperLogLog.count(both))
    }

    @Test func corruptedValuesAreReportedNotTrapped() {
        var truncated = adding(["a", "b"])
        truncated.removeLast()  // the opcodes now cover fewer than 16384 registers
        #expect(HyperLogLog.isValid(truncated))
        #expect(HyperLogLog.count(truncated) == nil)
        var registers = [UInt8](repeating: 0, count: HyperLogLog.registerCount)
        #expect(!HyperLogLog.merge(into: &registers, truncated))
        var copy = truncated
        #expect(!HyperLogLog.toDense(&copy) && copy == truncated)
        #expect(!HyperLogLog.isValid(b("HYLL")))
        #expect(!HyperLogLog.isValid(b("HYLL\u{0}") + [UInt8](repeating: 0, count: 20)))  // dense of the wrong size
        #expect(!HyperLogLog.isValid([72, 89, 76, 76, 2] + [UInt8](repeating: 0, count: 13)))
        #expect(!HyperLogLog.isValid(b("hyll") + [1] + [UInt8](repeating: 0, count: 13)))
    }

    @Test func wholeRegisterPathsAgreeWithOneRegisterAtATime() {
        var dense = HyperLogLog.empty()
        _ = HyperLogLog.toDense(&dense)
        var values = [UInt8](repeating: 0, count: HyperLogLog.registerCount)
        var seed: UInt64 = 42
        for i in values.indices {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            values[i] = UInt8(truncatingIfNeeded: seed >> 33) & 63
        }
        HyperLogLog.writeDenseRegisters(&dense, values)
        var read = [UInt8](repeating: 0, count: HyperLogLog.registerCount)
        HyperLogLog.forEachDenseRegister(dense) { r, v in read[r] = v }
        #expect(read == values)
        #expect((0..<HyperLogLog.registerCount).allSatisfy { HyperLogLog.denseRegister(dense, $0) == values[$0] })
        // Raising to a mix of higher and lower values keeps the maxima.
        var target = dense
        let other = values.map { 63 - $0 }
        HyperLogLog.raiseRegisters(&target, to: other, sparseMaxBytes: 3000)
        #expect((0..<HyperLogLog.registerCount).allSatisfy {
            HyperLogLog.denseRegister(target, $0) == max(values[$0], other[$0])
        })
    }

    @Test func cacheBitsRoundTrip() {
        var hll = HyperLogLog.empty()
        HyperLogLog.setCachedCardinality(&hll, 0x0102_0304_0506_0708)
        #expect(HyperLogLog.cachedCardinality(hll) == 0x0102_0304_0506_0708)
        HyperLogLog.invalidateCache(&hll)
        #expect(HyperLogLog.cachedCardinality(hll) == nil)
    }

    @Test func selfTestPasses() {
        #expect(HyperLogLog.selfTest() == nil)
    }
}
