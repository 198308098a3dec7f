import Testing
@testable import DamselflyStorage

@Suite struct EvictionTests {
    static let minuteMs: Int64 = 60_000

    @Test func lfuCounterStartsAtFiveAndDecaysPerPeriod() {
        let now: Int64 = 1_700_000_000_000
        let packed = LFU.initial(nowMs: now)
        #expect(LFU.decayed(packed, decayMinutes: 1, nowMs: now) == 5)
        #expect(LFU.decayed(packed, decayMinutes: 1, nowMs: now + 3 * Self.minuteMs) == 2)
        #expect(LFU.decayed(packed, decayMinutes: 2, nowMs: now + 3 * Self.minuteMs) == 4)
        #expect(LFU.decayed(packed, decayMinutes: 1, nowMs: now + 9 * Self.minuteMs) == 0)
        // lfu-decay-time 0: never decays.
        #expect(LFU.decayed(packed, decayMinutes: 0, nowMs: now + 90 * Self.minuteMs) == 5)
    }

    @Test func lfuMinuteClockWraps() {
        #expect(LFU.elapsed(since: 0xFFFE, nowMs: 3 * Self.minuteMs) == 4)
    }

    @Test func lfuIncrementIsLogarithmic() {
        // Below the initial value every hit counts; above it the chance shrinks with the factor.
        #expect(LFU.incremented(3, logFactor: 10, random: 0.99) == 4)
        #expect(LFU.incremented(6, logFactor: 10, random: 0.05) == 7)
        #expect(LFU.incremented(6, logFactor: 10, random: 0.2) == 6)
        #expect(LFU.incremented(255, logFactor: 0, random: 0) == 255)
        #expect(LFU.incremented(100, logFactor: 0, random: 0.999) == 101)
    }

    @Test func poolKeepsTheBestSixteenAndPopsHighestFirst() {
        var pool = EvictionPool()
        for score in [5, 1, 9, 3] as [UInt64] {
            pool.offer(EvictionCandidate(score: score, database: 0, key: Array("k\(score)".utf8), hash: score))
        }
        // The same key offered again keeps one slot with its new score.
        pool.offer(EvictionCandidate(score: 2, database: 0, key: Array("k9".utf8), hash: 9))
        #expect(pool.popBest()?.score == 5)
        for score in 100..<130 as Range<UInt64> {
            pool.offer(EvictionCandidate(score: score, database: 1, key: Array("x\(score)".utf8), hash: score))
        }
        #expect(pool.candidates.count == EvictionPool.capacity)
        #expect(pool.candidates.first?.score == 114)
        #expect(pool.popBest()?.score == 129)
    }

    /// `mightTake` (sampling copies a key out of the table only when it holds) is true whenever
    /// `offer` would change the pool: for random offers, a pool that changed was one it allowed.
    @Test func mightTakeCoversEveryOfferThatChangesThePool() {
        var pool = EvictionPool()
        var rng = SplitMix(state: 7)
        var refused = 0
        for _ in 0..<5_000 {
            let score = UInt64.random(in: 0..<200, using: &rng)
            let hash = UInt64.random(in: 0..<40, using: &rng)
            let allowed = pool.mightTake(score: score, hash: hash, database: Int(hash % 2))
            let before = pool.candidates.map { "\($0.score)/\($0.hash)" }
            pool.offer(EvictionCandidate(score: score, database: Int(hash % 2), key: Array("k\(hash)".utf8), hash: hash))
            if !allowed {
                refused += 1
                #expect(pool.candidates.map { "\($0.score)/\($0.hash)" } == before)
            }
            if pool.candidates.count == EvictionPool.capacity, Bool.random(using: &rng) { _ = pool.popBest() }
        }
        #expect(refused > 100)
    }

    @Test func volatileSamplingSeesOnlyKeysWithTTL() {
        let db = Database()
        for i in 0..<200 { db.insert("p\(i)", "v") }
        for i in 0..<20 { db.insert("t\(i)", "v", expireAtMs: 10_000_000 + Int64(i)) }
        var pool = EvictionPool()
        for _ in 0..<10 {
            db.sampleForEviction(policy: .volatileTTL, count: 5, nowMs: 0, databaseIndex: 0, into: &pool)
        }
        #expect(!pool.isEmpty)
        #expect(pool.candidates.allSatisfy { String(decoding: $0.key, as: UTF8.self).hasPrefix("t") })
        // volatile-ttl: the nearest expiry ranks highest.
        let best = pool.popBest()!
        #expect(pool.candidates.allSatisfy { $0.score <= best.score })
    }

    @Test func lruSamplingRanksTheIdlestHighest() {
        let db = Database()
        for i in 0..<50 {
            withBytes("k\(i)") { k in
                withBytes("v") { v in
                    _ = db.insert(k, hash: KeyHash.hash(k), value: .string(v), expireAtMs: nil, nowMs: Int64(i) * 1000)
                }
            }
        }
        var pool = EvictionPool()
        for _ in 0..<80 {
            db.sampleForEviction(policy: .allkeysLRU, count: 10, nowMs: 100_000, databaseIndex: 0, into: &pool)
        }
        let best = pool.popBest()!
        // Eighty rounds of ten samples over fifty keys: the pool holds the oldest ones.
        #expect(String(decoding: best.key, as: UTF8.self) == "k0")
        #expect(best.score == 100)
    }

    @Test func lfuModeCountsAccessesAndNewKeysStartAtFive() {
        let db = Database()
        db.configureAccessTracking(lfu: true, logFactor: 0, decayMinutes: 1)
        let now: Int64 = 1_700_000_000_000
        let index = withBytes("k") { k in
            withBytes("v") { v in db.insert(k, hash: KeyHash.hash(k), value: .string(v), expireAtMs: nil, nowMs: now) }
        }
        #expect(db.accessFrequency(at: index, nowMs: now) == 5)
        for _ in 0..<7 { db.touch(at: index, nowMs: now) }
        #expect(db.accessFrequency(at: index, nowMs: now) == 12)
        #expect(db.tracksFrequency)
    }
}
