import Testing
@testable import DamselflyStorage

/// ``ListValue`` against a plain array model: every operation, on lists of
/// one node and of many, with small and oversized elements, checking the
/// node structure (``ListValue/validate()``) after each step.
@Suite struct ListValueTests {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
    func strings(_ list: ListValue) -> [String] { list.elements.map { String(decoding: $0, as: UTF8.self) } }

    @Test func entryCodingRoundTripsEveryLengthClass() {
        for length in [0, 1, 127, 128, 129, 16383, 16384, 16385, 2_097_151, 2_097_152] {
            let data = [UInt8]((0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let size = ListValue.entrySize(length)
            let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
            defer { buffer.deallocate() }
            let written = data.withUnsafeBytes { ListValue.writeEntry(buffer, $0) }
            #expect(written == size)
            let (l1, h1) = ListValue.readHeader(buffer)
            let (l2, h2) = ListValue.readBacklen(buffer + size)
            #expect(l1 == length && l2 == length && h1 == h2 && l1 + 2 * h1 == size)
            #expect(Array(UnsafeBufferPointer(start: buffer + h1, count: length)) == data)
        }
    }

    @Test func pushPopBothEnds() {
        let list = ListValue()
        #expect(list.count == 0 && list.popFront() == nil && list.popBack() == nil)
        list.pushBack(bytes("b"))
        list.pushFront(bytes("a"))
        list.pushBack(bytes("c"))
        #expect(strings(list) == ["a", "b", "c"])
        #expect(list.first == bytes("a") && list.last == bytes("c"))
        #expect(list.popFront() == bytes("a"))
        #expect(list.popBack() == bytes("c"))
        #expect(list.popBack() == bytes("b"))
        #expect(list.count == 0 && list.nodeCountForTesting == 0)
        #expect(list.validate())
    }

    /// `pop(fromFront:_:)` hands the element's bytes to its body before they leave the node
    /// (across node boundaries, the node-freeing last element and multi-byte lengths included)
    /// and pops exactly what `popFront` / `popBack` would.
    @Test func popWithBodySeesTheElementBeforeItGoes() {
        let list = ListValue()
        var model: [[UInt8]] = []
        for i in 0..<300 {
            let element = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: i % 3 == 0 ? 200 : i % 50)
            list.pushBack(element)
            model.append(element)
        }
        var fromFront = true
        while !model.isEmpty {
            let expected = fromFront ? model.removeFirst() : model.removeLast()
            let seen = list.pop(fromFront: fromFront) { bytes -> [UInt8] in
                // Still in the list while the body runs.
                #expect(list.count == model.count + 1)
                return Array(bytes)
            }
            #expect(seen == expected)
            #expect(list.count == model.count && list.validate())
            fromFront.toggle()
        }
        #expect(list.pop(fromFront: true) { _ in 1 } == nil && list.pop(fromFront: false) { _ in 1 } == nil)
        #expect(list.nodeCountForTesting == 0)
    }

    @Test func emptyElementsAndBinary() {
        let list = ListValue()
        list.pushBack([])
        list.pushFront([0, 255, 13, 10])
        list.pushBack([])
        #expect(list.elements == [[0, 255, 13, 10], [], []])
        #expect(list.element(at: 1) == [])
        #expect(list.validate())
    }

    @Test func queueWorkloadUsesPackedNodes() {
        // LPUSH to enqueue, RPOP to fetch (Sidekiq): 120-byte payloads.
        let payload = [UInt8](repeating: 120, count: 120)
        let list = ListValue()
        for _ in 0..<10_000 { list.pushFront(payload) }
        #expect(list.count == 10_000)
        // 122 bytes an entry, 67 entries an 8 KB node.
        #expect(list.nodeCountForTesting == (10_000 + 66) / 67)
        let perElement = Double(list.memoryUsage) / 10_000
        #expect(perElement < 126, "bytes per 120-byte element: \(perElement)")
        #expect(list.validate())
        for _ in 0..<9_990 { #expect(list.popBack() == payload) }
        #expect(list.count == 10 && list.nodeCountForTesting == 1)
        #expect(list.validate())
    }

    @Test func oversizedElementsGetTheirOwnNode() {
        let big = [UInt8](repeating: 7, count: 20_000)
        let list = ListValue()
        list.pushBack(bytes("x"))
        list.pushBack(big)
        list.pushFront(big)
        list.pushBack(bytes("y"))
        #expect(list.elements == [big, bytes("x"), big, bytes("y")])
        #expect(list.nodeCountForTesting == 4)
        #expect(list.validate())
        [UInt8](repeating: 1, count: 9000).withUnsafeBytes { list.replace(at: 1, with: $0) }
        #expect(list.validate())
    }

    @Test func indexRangeAndReverseWalk() {
        let list = ListValue((0..<1000).map { bytes("element-\($0)") })
        for i in [0, 1, 66, 67, 499, 500, 998, 999] {
            #expect(list.element(at: i) == bytes("element-\(i)"))
        }
        #expect(list.range(10, 12).map { String(decoding: $0, as: UTF8.self) } == ["element-10", "element-11", "element-12"])
        var seen: [Int] = []
        list.forEach(from: 5, reverse: true) { _, i in
            seen.append(i)
            return true
        }
        #expect(seen == [5, 4, 3, 2, 1, 0])
    }

    @Test func insertRemoveTrimAgainstModel() {
        var rng = ListTestRandom(seed: 42)
        let list = ListValue()
        var model: [[UInt8]] = []
        func element() -> [UInt8] {
            let length = [0, 1, 5, 20, 120, 130, 500, 9000][Int(rng.next() % 8)]
            let tag = UInt8(truncatingIfNeeded: rng.next() % 4)
            return [UInt8](repeating: 65 + tag, count: length)
        }
        for step in 0..<6000 {
            let op = rng.next() % 12
            switch op {
            case 0, 1:
                let e = element()
                list.pushFront(e)
                model.insert(e, at: 0)
            case 2, 3:
                let e = element()
                list.pushBack(e)
                model.append(e)
            case 4:
                #expect(list.popFront() == (model.isEmpty ? nil : model.removeFirst()))
            case 5:
                #expect(list.popBack() == model.popLast())
            case 6:
                if !model.isEmpty {
                    let i = Int(rng.next() % UInt64(model.count))
                    let e = element()
                    e.withUnsafeBytes { list.replace(at: i, with: $0) }
                    model[i] = e
                }
            case 7:
                let pivot = element(), e = element()
                let after = rng.next() % 2 == 0
                let found = e.withUnsafeBytes { v in pivot.withUnsafeBytes { list.insert(v, pivot: $0, after: after) } }
                if let i = model.firstIndex(of: pivot) {
                    #expect(found)
                    model.insert(e, at: after ? i + 1 : i)
                } else {
                    #expect(!found)
                }
            case 8:
                let value = element()
                let limit = Int(rng.next() % 4)
                let fromTail = rng.next() % 2 == 0
                let removed = value.withUnsafeBytes { list.removeAll(equalTo: $0, limit: limit, fromTail: fromTail) }
                var indices = model.indices.filter { model[$0] == value }
                if fromTail { indices.reverse() }
                if limit > 0 { indices = Array(indices.prefix(limit)) }
                for i in indices.sorted(by: >) { model.remove(at: i) }
                #expect(removed == indices.count)
            case 9:
                let n = Int(rng.next() % 80)
                list.removeFirst(n)
                model.removeFirst(min(n, model.count))
            case 10:
                let n = Int(rng.next() % 80)
                list.removeLast(n)
                model.removeLast(min(n, model.count))
            default:
                for _ in 0..<Int(rng.next() % 200) {
                    let e = element()
                    list.pushBack(e)
                    model.append(e)
                }
            }
            #expect(list.count == model.count)
            if !list.validate() {
                Issue.record("structure broken after step \(step) (op \(op))")
                return
            }
            if step % 50 == 0 { #expect(list.elements == model) }
            if !model.isEmpty {
                let i = Int(rng.next() % UInt64(model.count))
                #expect(list.element(at: i) == model[i])
            }
        }
        #expect(list.elements == model)
    }

    @Test func copyIsIndependent() {
        let list = ListValue((0..<300).map { bytes("v\($0)") })
        let other = list.copy()
        #expect(other.elements == list.elements)
        _ = other.popFront()
        other.pushBack(bytes("new"))
        #expect(list.count == 300 && list.element(at: 0) == bytes("v0"))
        #expect(other.validate() && list.validate())
    }

    @Test func memoryUsageFollowsContents() {
        let list = ListValue()
        let empty = list.memoryUsage
        for i in 0..<2000 { list.pushBack(bytes("value-\(i)")) }
        let full = list.memoryUsage
        #expect(full > empty + 2000 * 10)
        list.removeFirst(1990)
        // What is left fits the last node: one 8 KB buffer.
        #expect(list.nodeCountForTesting == 1)
        #expect(list.memoryUsage < full / 2)
    }

    @Test func encodingIsQuicklistAsRedis70() {
        let list = ListValue([bytes("a")])
        #expect(list.encodingName == "quicklist")
        #expect(list.typeName == "list")
        #expect(StoredValue.list(list).typeName == "list")
    }
}

/// A small deterministic generator for the model tests.
struct ListTestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
