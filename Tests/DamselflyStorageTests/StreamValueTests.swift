import Testing
@testable import DamselflyStorage

/// ``StreamValue``: packed nodes, ID rules, trimming and consumer groups.
@Suite struct StreamValueTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    func parse(_ s: String, strict: Bool = false, auto: Bool = false, missingSeq: UInt64 = 0) -> StreamID.Parsed? {
        Array(s.utf8).withUnsafeBytes { StreamID.parse($0, missingSeq: missingSeq, strict: strict, allowAutoSeq: auto) }
    }

    @Test func idParsing() {
        #expect(parse("1-2")?.id == StreamID(1, 2))
        #expect(parse("5")?.id == StreamID(5, 0))
        #expect(parse("5", missingSeq: .max)?.id == StreamID(5, .max))
        #expect(parse("-")?.id == .zero)
        #expect(parse("+")?.id == .max)
        #expect(parse("-", strict: true) == nil)
        #expect(parse("7-*", auto: true)?.seqGiven == false)
        #expect(parse("7-*") == nil)
        #expect(parse("18446744073709551615-18446744073709551615")?.id == .max)
        #expect(parse("18446744073709551616-0") == nil)
        #expect(parse("-1") == nil)
        #expect(parse("1-2-3") == nil)
        #expect(parse("") == nil)
        #expect(parse("abc") == nil)
        // strtoull's leniency, as Redis's string2ull falls back to it.
        #expect(parse("01-+2")?.id == StreamID(1, 2))
        #expect(StreamID(1, .max).successor == StreamID(2, 0))
        #expect(StreamID.max.successor == nil)
        #expect(StreamID(2, 0).predecessor == StreamID(1, .max))
        #expect(StreamID.zero.predecessor == nil)
    }

    @Test func appendRangeAndNodes() {
        let s = StreamValue()
        for i in 1...250 {
            s.append(StreamID(UInt64(i), 0), [b("job"), b("j\(i)"), b("state"), b("new")])
        }
        #expect(s.count == 250)
        #expect(s.nodeCount == 3)  // 100 entries a node, as Redis cuts listpacks
        #expect(s.entry(StreamID(150, 0))?.fields == [b("job"), b("j150"), b("state"), b("new")])
        #expect(s.entry(StreamID(150, 1)) == nil)
        let r = s.range(StreamID(99, 0), StreamID(102, 0))
        #expect(r.map(\.id.ms) == [99, 100, 101, 102])
        #expect(s.range(.zero, .max, limit: 3, reverse: true).map(\.id.ms) == [250, 249, 248])
        #expect(s.range(StreamID(199, 0), StreamID(201, 0), reverse: true).map(\.id.ms) == [201, 200, 199])
        // A record of another shape keeps its own field names.
        s.append(StreamID(251, 0), [b("other"), b("x")])
        #expect(s.entry(StreamID(251, 0))?.fields == [b("other"), b("x")])
        #expect(s.firstID == StreamID(1, 0))
        #expect(s.entriesAdded == 251)
    }

    /// XADD's packed pairs: every shape reads back as given (master-shaped entries store only
    /// their values, others their pairs), the node bytes are the documented layout, and the
    /// reply's ID text is the decimal `ms-seq`.
    /// ``StreamValue/visitRange(_:_:limit:entry:string:)`` (and `range`, built on it) reads
    /// in place what was appended: the same entries and strings, across nodes, around deleted
    /// entries and entries whose field names differ from their node's master fields.
    @Test func visitRangeReadsWhatWasAppended() {
        let s = StreamValue()
        var all: [StreamValue.Entry] = []
        for i in 1...230 {
            let fields = i % 7 == 0 ? [b("other"), b("v\(i)")] : [b("job"), b("j\(i)"), b("state"), b("new")]
            s.append(StreamID(UInt64(i), 0), fields)
            all.append(StreamValue.Entry(id: StreamID(UInt64(i), 0), fields: fields))
        }
        let deleted: Set<StreamID> = [StreamID(3, 0), StreamID(100, 0), StreamID(101, 0), StreamID(230, 0)]
        _ = s.delete(Array(deleted))
        all.removeAll { deleted.contains($0.id) }
        for (start, end, limit) in [(StreamID.zero, StreamID.max, 0), (StreamID(50, 0), StreamID(160, 0), 0),
                                    (StreamID(99, 0), StreamID.max, 10), (StreamID(231, 0), StreamID.max, 0)] {
            let inRange = all.filter { $0.id >= start && $0.id <= end }
            let expected = limit > 0 ? Array(inRange.prefix(limit)) : inRange
            var seen: [StreamValue.Entry] = []
            var announced: [Int] = []
            let visited = s.visitRange(start, end, limit: limit, entry: { id, strings in
                seen.append(StreamValue.Entry(id: id, fields: []))
                announced.append(strings)
            }, string: { seen[seen.count - 1].fields.append(Array($0)) })
            #expect(seen == expected)
            #expect(visited == expected.count)
            #expect(announced == expected.map(\.fields.count))
            #expect(s.range(start, end, limit: limit) == expected)
            #expect(s.range(start, end, limit: limit, reverse: true) == (limit > 0 ? Array(inRange.reversed().prefix(limit)) : inRange.reversed()))
        }
    }

    /// The last live ID without a scan when the last node has nothing deleted; with a
    /// scan (skipping the deleted tail) when it has.
    @Test func lastValidIDSkipsDeletedTail() {
        let s = StreamValue()
        for i in 1...5 { s.append(StreamID(UInt64(i), 0), [b("f"), b("\(i)")]) }
        #expect(s.lastValidID == StreamID(5, 0))
        _ = s.delete([StreamID(5, 0)])
        #expect(s.lastValidID == StreamID(4, 0))
        s.append(StreamID(6, 0), [b("f"), b("6")])
        #expect(s.lastValidID == StreamID(6, 0))
        _ = s.delete([StreamID(6, 0), StreamID(4, 0)])
        #expect(s.lastValidID == StreamID(3, 0))
    }

    @Test func packedFieldsAppend() {
        func packed(_ pairs: [[UInt8]]) -> StreamFields {
            var fields = StreamFields(reservingBytes: 0)
            for p in pairs { p.withUnsafeBytes { fields.append($0) } }
            return fields
        }
        let small = StreamValue()
        small.append(StreamID(5, 0), packed([b("a"), b("x")]))
        small.append(StreamID(6, 1), packed([b("b"), b("yy")]))
        small.append(StreamID(7, 0), packed([b("a"), b("")]))
        // flags · varint(ms − 5) · varint(seq) · (values | varint(pairs) · pairs), strings as varint(length) · bytes.
        #expect(small.nodes[0].bytes == [2, 0, 0, 1, 120] + [0, 1, 1, 1, 1, 98, 2, 121, 121] + [2, 2, 0, 0])
        #expect(small.nodes[0].masterFields == [b("a")])

        let s = StreamValue()
        var shapes: [[[UInt8]]] = []
        for i in 0..<230 {
            switch i % 7 {
            case 3: shapes.append([b("other"), b("\(i)")])
            case 5: shapes.append([b(""), b(""), b("n"), b("-\(i * 1000)")])
            default: shapes.append([b("class"), b("HardJob"), b("args"), b("[\(i)]"), b("jid"), b(String(repeating: "j", count: i))])
            }
        }
        for (i, pairs) in shapes.enumerated() {
            let fields = packed(pairs)
            #expect(fields.count == pairs.count && fields.dataBytes == pairs.reduce(0) { $0 + $1.count })
            s.append(StreamID(1_700_000_000_000 + UInt64(i / 3), UInt64(i % 3)), fields)
        }
        // At most 100 entries a node (stream-node-max-entries), more where the 4 KiB byte bound splits first.
        #expect(s.count == 230 && s.nodeCount >= 3)
        #expect(s.range(.zero, .max).map(\.fields) == shapes)
        #expect(s.entry(StreamID(1_700_000_000_000 + 40, 1))?.fields == shapes[121])
        #expect(StreamID.zero.bytes == b("0-0"))
        #expect(StreamID(1_700_000_000_123, 42).bytes == b("1700000000123-42"))
        #expect(StreamID.max.bytes == b("18446744073709551615-18446744073709551615"))
        #expect(StreamID(9, 10).bytes == b(StreamID(9, 10).description))
    }

    @Test func addIDRules() {
        let s = StreamValue()
        #expect(s.resolveAddID(nil, nowMs: 1000) == .success(StreamID(1000, 0)))
        s.append(StreamID(1000, 0), [b("a"), b("1")])
        // The clock went back: the sequence moves on instead.
        #expect(s.resolveAddID(nil, nowMs: 10) == .success(StreamID(1000, 1)))
        #expect(s.resolveAddID(parse("1000-*", auto: true), nowMs: 0) == .success(StreamID(1000, 1)))
        #expect(s.resolveAddID(parse("2000-*", auto: true), nowMs: 0) == .success(StreamID(2000, 0)))
        #expect(s.resolveAddID(parse("1000-0"), nowMs: 0) == .failure(.notGreater))
        #expect(s.resolveAddID(parse("999-5"), nowMs: 0) == .failure(.notGreater))
    }

    @Test func deleteAndTombstones() {
        let s = StreamValue()
        for i in 1...5 { s.append(StreamID(UInt64(i), 0), [b("f"), b("\(i)")]) }
        #expect(s.delete([StreamID(1, 0), StreamID(3, 0), StreamID(9, 0)]) == 2)
        #expect(s.count == 3)
        #expect(s.firstID == StreamID(2, 0))
        #expect(s.maxDeletedID == StreamID(3, 0))
        #expect(s.range(.zero, .max).map(\.id.ms) == [2, 4, 5])
        #expect(s.rangeHasTombstones(.zero))
        #expect(!s.rangeHasTombstones(StreamID(4, 0)))
        // Deleting every entry of a node drops the node.
        #expect(s.delete([StreamID(2, 0), StreamID(4, 0), StreamID(5, 0)]) == 3)
        #expect(s.nodeCount == 0 && s.count == 0 && s.firstID == .zero)
        #expect(s.lastID == StreamID(5, 0))
    }

    @Test func trimming() {
        let s = StreamValue()
        for i in 1...250 { s.append(StreamID(UInt64(i), 0), [b("f"), b("v")]) }
        // Approximate: whole nodes only.
        #expect(s.trim(.maxLength(180), approximate: true, limit: 0) == 0)
        #expect(s.trim(.maxLength(150), approximate: true, limit: 0) == 100)
        #expect(s.count == 150 && s.firstID == StreamID(101, 0))
        // Exact.
        #expect(s.trim(.maxLength(120), approximate: false, limit: 0) == 30)
        #expect(s.firstID == StreamID(131, 0))
        #expect(s.trim(.minID(StreamID(201, 0)), approximate: false, limit: 0) == 70)
        #expect(s.range(.zero, .max, limit: 1).first?.id == StreamID(201, 0))
        // LIMIT stops before a node that would exceed it.
        #expect(s.trim(.maxLength(0), approximate: true, limit: 10) == 0)
    }

    @Test func groupsDeliverAckClaim() {
        let s = StreamValue()
        for i in 1...10 { s.append(StreamID(UInt64(i), 0), [b("n"), b("\(i)")]) }
        let g = s.createGroup(b("g"), lastID: .zero, entriesRead: StreamGroup.invalidEntriesRead)!
        #expect(s.createGroup(b("g"), lastID: .zero, entriesRead: 0) == nil)
        let (alice, created) = g.findOrCreateConsumer(b("alice"), nowMs: 100)
        #expect(created)
        let first = s.deliverNew(g, to: alice, limit: 4, noAck: false, nowMs: 100)
        #expect(first.map(\.id.ms) == [1, 2, 3, 4])
        #expect(g.lastID == StreamID(4, 0) && g.entriesRead == 4)
        #expect(s.lag(g) == 6)
        #expect(g.pel.count == 4 && alice.pel.count == 4)
        #expect(s.acknowledge(g, [StreamID(1, 0), StreamID(1, 0), StreamID(9, 0)]) == 1)
        #expect(alice.pel.ids == [StreamID(2, 0), StreamID(3, 0), StreamID(4, 0)])
        // History re-delivers and counts.
        let history = s.pendingHistory(g, of: alice, from: .zero, limit: 0, nowMs: 150)
        #expect(history.map(\.0.ms) == [2, 3, 4])
        #expect(g.pel[StreamID(2, 0)]?.deliveryCount == 2)
        // Claim by idle time.
        var options = StreamValue.ClaimOptions()
        options.minIdle = 100
        #expect(s.claim(g, consumerName: b("bob"), ids: [StreamID(2, 0)], options: options, nowMs: 200).isEmpty)
        #expect(g.consumer(b("bob")) == nil)
        let claimed = s.claim(g, consumerName: b("bob"), ids: [StreamID(2, 0)], options: options, nowMs: 300)
        #expect(claimed.map(\.0) == [StreamID(2, 0)])
        let bob = g.consumer(b("bob"))!
        #expect(bob.pel.ids == [StreamID(2, 0)] && alice.pel.count == 2)
        // A deleted entry's NACK goes away on claim.
        _ = s.delete([StreamID(3, 0)])
        let auto = s.autoClaim(g, consumerName: b("bob"), minIdle: 0, start: .zero, limit: 10, justID: true, nowMs: 400)
        #expect(auto.deleted == [StreamID(3, 0)])
        #expect(auto.claimed.map(\.0) == [StreamID(2, 0), StreamID(4, 0)])
        #expect(auto.cursor == .zero)
        #expect(alice.pel.isEmpty && bob.pel.count == 2)
        #expect(g.deleteConsumer(b("bob")) == 2)
        #expect(g.pel.isEmpty)
        // Copies are deep.
        let copy = s.copy()
        _ = s.destroyGroup(b("g"))
        #expect(copy.group(b("g"))?.lastID == StreamID(4, 0))
        #expect(s.groups.isEmpty)
    }

    @Test func entriesReadEstimates() {
        let s = StreamValue()
        #expect(s.entriesRead(upTo: StreamID(5, 0)) == 0)
        for i in 1...5 { s.append(StreamID(UInt64(i), 0), [b("f"), b("v")]) }
        #expect(s.entriesRead(upTo: StreamID(5, 0)) == 5)
        #expect(s.entriesRead(upTo: StreamID(1, 0)) == 1)
        #expect(s.entriesRead(upTo: .zero) == 0)
        #expect(s.entriesRead(upTo: StreamID(3, 0)) == nil)
        #expect(s.entriesRead(upTo: StreamID(6, 0)) == nil)
    }

    @Test func memoryIsCompactAndTracked() {
        let s = StreamValue()
        let empty = s.memoryUsage
        for i in 0..<10_000 {
            s.append(StreamID(1_700_000_000_000 + UInt64(i), 0),
                     [b("type"), b("email"), b("user"), b("u\(i)"), b("attempt"), b("0"), b("queue"), b("default"), b("state"), b("new")])
        }
        let perEntry = Double(s.memoryUsage - empty) / 10_000
        // Values only, field names once per node: well under Redis's ~60 bytes.
        #expect(perEntry < 45)
        #expect(s.delete([StreamID(1_700_000_000_000, 0)]) == 1)
        s.trim(.maxLength(0), approximate: false, limit: 0)
        #expect(s.memoryUsage - empty < 200)
    }
}
