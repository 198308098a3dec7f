import Testing
@testable import DamselflyStorage

/// ``SortedSetValue`` in both encodings against a simple reference (a sorted
/// array), plus the counted B+tree's structure after heavy churn.
@Suite struct SortedSetValueTests {
    func m(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// Reference model: sorted (score, member) pairs.
    struct Model {
        var items: [(Double, [UInt8])] = []
        mutating func sort() {
            items.sort { a, b in a.0 < b.0 || (a.0 == b.0 && ZEntry.compareMembers(a.1, b.1) < 0) }
        }
        func score(_ member: [UInt8]) -> Double? { items.first { $0.1 == member }?.0 }
    }

    func agrees(_ z: SortedSetValue, _ model: Model) -> Bool {
        guard z.count == model.items.count else { return false }
        let all = z.allEntries
        for (i, e) in all.enumerated() where e.score != model.items[i].0 || e.member != model.items[i].1 {
            return false
        }
        return z.checkInvariants()
    }

    @Test func listpackBasics() {
        let z = SortedSetValue()
        z.insert(m("b"), score: 2)
        z.insert(m("a"), score: 1)
        z.insert(m("c"), score: 1)
        #expect(z.encodingName == "listpack")
        #expect(z.allEntries.map { String(decoding: $0.member, as: UTF8.self) } == ["a", "c", "b"])
        #expect(z.rank(of: m("b"))?.rank == 2)
        #expect(z.score(of: m("c")) == 1)
        z.update(m("c"), from: 1, to: 5)
        #expect(z.entry(at: 2).member == m("c"))
        #expect(z.remove(m("a")) == 1)
        #expect(z.remove(m("a")) == nil)
        #expect(z.count == 2)
    }

    @Test func convertsOnSizeAndOnLongMember() {
        let z = SortedSetValue()
        for i in 0..<SortedSetValue.maxListpackEntries { z.insert(m("m\(i)"), score: Double(i)) }
        #expect(z.encodingName == "listpack")
        z.insert(m("one-more"), score: -1)
        #expect(z.encodingName == "skiplist")
        #expect(z.entry(at: 0).member == m("one-more"))
        #expect(z.checkInvariants())
        let long = SortedSetValue()
        long.insert(m("short"), score: 1)
        long.insert([UInt8](repeating: 120, count: SortedSetValue.maxListpackValue + 1), score: 0)
        #expect(long.encodingName == "skiplist")
        #expect(SortedSetValue(firstMemberLength: 65).encodingName == "skiplist")
    }

    @Test func storedResultsPickTheirEncoding() {
        let small = (0..<128).map { ZEntry(score: Double($0), member: Array("e\($0)".utf8)) }
        #expect(SortedSetValue(sortedEntries: small).encodingName == "listpack")
        let big = (0..<129).map { ZEntry(score: Double($0), member: Array("e\($0)".utf8)) }
        let z = SortedSetValue(sortedEntries: big)
        #expect(z.encodingName == "skiplist")
        #expect(z.checkInvariants())
        #expect(z.rank(of: m("e100"))?.rank == 100)
    }

    @Test func negativeZeroInListpackOnly() {
        let z = SortedSetValue()
        z.insert(m("a"), score: -0.0)
        #expect(z.score(of: m("a"))!.sign == .plus)
        z.convertToSkiplist()
        z.insert(m("b"), score: -0.0)
        #expect(z.score(of: m("b"))!.sign == .minus)
    }

    @Test func randomOperationsAgreeWithModel() {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<3 {
            let z = SortedSetValue()
            var model = Model()
            let universe = round == 0 ? 100 : 4000
            for step in 0..<20_000 {
                let member = m("m\(Int.random(in: 0..<universe, using: &rng))")
                let score = Double(Int.random(in: -50...50, using: &rng)) / 4
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<5:
                    if let old = z.score(of: member) {
                        z.update(member, from: old, to: score)
                        let i = model.items.firstIndex { $0.1 == member }!
                        model.items[i].0 = z.isListpack && score == 0 ? 0 : score
                    } else {
                        z.insert(member, score: score)
                        model.items.append((z.isListpack && score == 0 ? 0 : score, member))
                    }
                    model.sort()
                case 5..<7:
                    let removed = z.remove(member)
                    let expected = model.score(member)
                    #expect(removed == expected)
                    model.items.removeAll { $0.1 == member }
                case 7:
                    if z.count > 0 {
                        let lo = Int.random(in: 0..<z.count, using: &rng)
                        let hi = Swift.min(z.count, lo + Int.random(in: 0...300, using: &rng))
                        z.removeRanks(lo..<hi)
                        model.items.removeSubrange(lo..<hi)
                    }
                case 8:
                    let cut = Double(Int.random(in: -50...50, using: &rng)) / 4
                    #expect(z.countBefore { $0.score < cut } == model.items.filter { $0.0 < cut }.count)
                default:
                    if let (rank, score) = z.rank(of: member) {
                        #expect(model.items[rank].1 == member && model.items[rank].0 == score)
                    } else {
                        #expect(model.score(member) == nil)
                    }
                }
                if step % 2000 == 0 { #expect(agrees(z, model)) }
            }
            #expect(agrees(z, model))
            let reversed = z.entries(ranks: 0..<z.count, reverse: true).map(\.member)
            #expect(reversed == model.items.reversed().map(\.1))
        }
    }

    /// Every structure's order checked after every operation (issue 20):
    /// both encodings, sets built from prepared entries, conversions.
    @Test func invariantsHoldAfterEveryOperation() {
        var rng = SystemRandomNumberGenerator()
        #expect(SortedSetValue.isStrictlyOrdered([ZEntry(score: 1, member: m("a")), ZEntry(score: 1, member: m("b"))]))
        #expect(!SortedSetValue.isStrictlyOrdered([ZEntry(score: 1, member: m("b")), ZEntry(score: 1, member: m("a"))]))
        #expect(!SortedSetValue.isStrictlyOrdered([ZEntry(score: 2, member: m("a")), ZEntry(score: 1, member: m("b"))]))
        #expect(!SortedSetValue.isStrictlyOrdered([ZEntry(score: 1, member: m("a")), ZEntry(score: 1, member: m("a"))]))
        for round in 0..<6 {
            let universe = [40, 200, 1000][round % 3]
            var prepared = (0..<Int.random(in: 0...universe, using: &rng)).map {
                ZEntry(score: Double(Int.random(in: -5...5, using: &rng)), member: m("p\($0)"))
            }
            prepared.sort { $0.isBefore($1.score, $1.member) }
            let z = round < 3 ? SortedSetValue(sortedEntries: prepared) : SortedSetValue()
            #expect(z.checkInvariants())
            for _ in 0..<1500 {
                let member = m(Bool.random(using: &rng) ? "p\(Int.random(in: 0..<universe, using: &rng))"
                                                        : "n\(Int.random(in: 0..<universe, using: &rng))")
                let score = Double(Int.random(in: -20...20, using: &rng)) / 2
                switch Int.random(in: 0..<8, using: &rng) {
                case 0..<4:
                    if let old = z.score(of: member) { z.update(member, from: old, to: score) } else { z.insert(member, score: score) }
                case 4..<6:
                    _ = z.remove(member)
                case 6:
                    if z.count > 0 {
                        let lo = Int.random(in: 0..<z.count, using: &rng)
                        z.removeRanks(lo..<Swift.min(z.count, lo + Int.random(in: 0...20, using: &rng)))
                    }
                default:
                    if Int.random(in: 0..<50, using: &rng) == 0 { z.convertToSkiplist() }
                }
                #expect(z.checkInvariants())
            }
            let copy = SortedSetValue(sortedEntries: z.allEntries)
            #expect(copy.checkInvariants() && copy.allEntries.map(\.member) == z.allEntries.map(\.member))
        }
    }

    @Test func largeRangeRemovalKeepsTreeValid() {
        let z = SortedSetValue()
        for i in 0..<100_000 { z.insert(m("job-\(i)"), score: Double(i % 977)) }
        #expect(z.checkInvariants())
        z.removeRanks(10..<90_000)
        #expect(z.count == 10_010)
        #expect(z.checkInvariants())
        z.removeRanks(0..<z.count - 1)
        #expect(z.count == 1)
        #expect(z.checkInvariants())
    }
}
