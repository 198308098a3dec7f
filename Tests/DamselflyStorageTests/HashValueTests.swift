import Testing
@testable import DamselflyStorage

/// ``HashValue``, ``PackedPairs`` and ``ByteTable``: contents, order and the
/// listpack → hashtable switch-over at Redis 7.0's thresholds.
@Suite struct HashValueTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }
    func s(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    @Test func setGetRemoveInListpack() {
        let h = HashValue()
        #expect(h.count == 0 && h.encodingName == "listpack" && h.typeName == "hash")
        #expect(h.set(b("a"), b("1")))
        #expect(h.set(b("b"), b("")))
        #expect(h.set(b(""), b("empty-field")))
        #expect(!h.set(b("a"), b("longer value")))
        #expect(h.count == 3)
        #expect(h.get(b("a")).map(s) == "longer value")
        #expect(h.get(b("b")) == [])
        #expect(h.get(b("")).map(s) == "empty-field")
        #expect(h.get(b("zz")) == nil)
        #expect(h.valueLength(b("a")) == 12)
        // Insertion order is kept, an update stays in place.
        #expect(h.pairs.map { s($0.0) } == ["a", "b", ""])
        #expect(h.remove(b("b")))
        #expect(!h.remove(b("b")))
        #expect(h.pairs.map { s($0.0) } == ["a", ""])
        #expect(h.encodingName == "listpack")
    }

    /// Regression (Redis suite, "Hash ziplist of various encodings"): with
    /// hash-max-listpack-value raised, values of 128, 300 and 16,383 bytes stay
    /// packed; a one-byte length trapped on the 300-byte one.
    @Test func packedLengthsPastOneByte() {
        var p = PackedPairs()
        let sizes = [0, 1, 127, 128, 255, 256, 300, 16_383, 16_384, 70_000]
        for (i, n) in sizes.enumerated() {
            let field = Array(repeating: UInt8(65 + i), count: n)
            let value = Array(repeating: UInt8(97 + i), count: sizes[sizes.count - 1 - i])
            #expect(field.withUnsafeBytes { f in value.withUnsafeBytes { v in p.set(f, v) } })
        }
        #expect(p.count == sizes.count)
        for (i, n) in sizes.enumerated() {
            let (f, v) = p.entry(i)
            #expect(f == Array(repeating: UInt8(65 + i), count: n))
            #expect(v == Array(repeating: UInt8(97 + i), count: sizes[sizes.count - 1 - i]))
        }
        // Replacing values across the one-byte / two-byte / three-byte boundary keeps the rest.
        for (i, n) in sizes.enumerated() {
            let field = Array(repeating: UInt8(65 + i), count: n)
            let value = Array(repeating: UInt8(48 + i), count: sizes[(i + 3) % sizes.count])
            #expect(!field.withUnsafeBytes { f in value.withUnsafeBytes { v in p.set(f, v) } })
        }
        for (i, n) in sizes.enumerated() {
            let field = Array(repeating: UInt8(65 + i), count: n)
            let position = field.withUnsafeBytes { p.find($0) }
            #expect(position.map { p.value(at: $0) } == Array(repeating: UInt8(48 + i), count: sizes[(i + 3) % sizes.count]))
        }
        #expect(Array(repeating: UInt8(65 + 3), count: 128).withUnsafeBytes { p.remove($0) })
        #expect(p.count == sizes.count - 1)
        #expect(p.pairs.map { $0.0.count } == [0, 1, 127, 255, 256, 300, 16_383, 16_384, 70_000])
    }

    @Test func convertsPastEntryCount() {
        let h = HashValue()
        for i in 0..<HashValue.maxListpackEntries { h.set(b("f\(i)"), b("\(i)")) }
        #expect(h.encodingName == "listpack")
        h.set(b("f0"), b("again"))  // an update does not grow it
        #expect(h.encodingName == "listpack")
        h.set(b("extra"), b("x"))
        #expect(h.encodingName == "hashtable")
        #expect(h.count == HashValue.maxListpackEntries + 1)
        #expect(h.get(b("f0")).map(s) == "again")
        for i in 1..<HashValue.maxListpackEntries { #expect(h.get(b("f\(i)")).map(s) == "\(i)") }
        // Never converts back.
        for i in 0..<HashValue.maxListpackEntries { #expect(h.remove(b("f\(i)"))) }
        #expect(h.count == 1 && h.encodingName == "hashtable")
    }

    @Test func convertsOnLongStrings() {
        let h = HashValue()
        h.set(b("k"), Array(repeating: 65, count: 64))
        #expect(h.encodingName == "listpack")
        h.set(b("k2"), Array(repeating: 65, count: 65))
        #expect(h.encodingName == "hashtable")
        let g = HashValue()
        g.set(Array(repeating: 66, count: 65), b("v"))
        #expect(g.encodingName == "hashtable")
        let n = HashValue()
        n.convertIfLonger(3, 64)
        #expect(n.encodingName == "listpack")
        n.convertIfLonger(65)
        #expect(n.encodingName == "hashtable")
    }

    @Test func tableAgreesWithDictionary() {
        var table = ByteTable(withValues: true)
        var model: [[UInt8]: [UInt8]] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0..<20_000 {
            let k = b("k\(Int.random(in: 0..<700, using: &rng))")
            if Int.random(in: 0..<3, using: &rng) == 0 {
                #expect(k.withUnsafeBytes { table.remove($0) } == (model.removeValue(forKey: k) != nil))
            } else {
                let v = b("v\(step)")
                #expect(table.set(k, v) == (model.updateValue(v, forKey: k) == nil))
            }
            #expect(table.count == model.count)
        }
        for (k, v) in model { #expect(k.withUnsafeBytes { table.find($0) }.map { table.value(at: $0) } == v) }
        var seen = 0
        table.forEachSlot { slot in
            #expect(model[table.key(at: slot)] == table.value(at: slot))
            seen += 1
        }
        #expect(seen == model.count)
    }

    @Test func scanVisitsEverythingAcrossResizes() {
        // Elements present for the whole walk are returned at least once,
        // even when the table grows and shrinks between steps.
        var table = ByteTable(withValues: false)
        for i in 0..<200 { table.set(b("stay\(i)")) }
        var cursor: UInt64 = 0
        var seen = Set<[UInt8]>()
        var step = 0
        repeat {
            cursor = table.scan(cursor: cursor) { seen.insert(table.key(at: $0)) }
            step += 1
            if step == 20 { for i in 0..<2000 { table.set(b("grow\(i)")) } }
            if step == 200 {
                for i in 0..<2000 {
                    let k = b("grow\(i)")
                    k.withUnsafeBytes { _ = table.remove($0) }
                }
            }
        } while cursor != 0
        for i in 0..<200 { #expect(seen.contains(b("stay\(i)"))) }
    }

    @Test func scanOfListpackReturnsEverythingAtOnce() {
        let h = HashValue()
        for i in 0..<50 { h.set(b("f\(i)"), b("v")) }
        var n = 0
        #expect(h.scan(cursor: 12345, count: 1) { _, _ in n += 1 } == 0)
        #expect(n == 50)
    }

    @Test func randomPairsComeFromTheHash() {
        var rng = SystemRandomNumberGenerator()
        for size in [1, 5, 200] {
            let h = HashValue()
            for i in 0..<size { h.set(b("f\(i)"), b("v\(i)")) }
            for _ in 0..<100 {
                let (f, v) = h.randomPair(using: &rng)
                #expect(h.get(f) == v)
            }
        }
    }

    @Test func memoryGrowsAndShrinks() {
        let h = HashValue()
        let empty = h.memoryUsage
        for i in 0..<1000 { h.set(b("field-\(i)"), b("value-\(i)")) }
        let full = h.memoryUsage
        #expect(full > empty + 1000 * 10)
        for i in 0..<1000 { h.remove(b("field-\(i)")) }
        #expect(h.memoryUsage < full / 4)
    }
}
