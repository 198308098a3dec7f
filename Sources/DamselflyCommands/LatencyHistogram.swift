import DamselflyRuntime
import Synchronization

/// One command's call latencies on one loop, laid out as the HDR histogram Redis 7.0
/// keeps per command (1 ns to 1 s, two significant digits): a value of `v` ns falls in
/// bucket `b = ⌊log2 v⌋ − 7` at sub-bucket `v >> b`, 128 sub-buckets of `2^b` ns each.
/// Redis records each call's whole microseconds as nanoseconds (0 µs as 1 ns), so only
/// buckets 2 ... 22 and the 1 ns slot are reachable; each bucket's 128 counters are
/// allocated on its first call, so a command that always answers in a few microseconds
/// holds three or four of them, not the 3,072 of a full histogram.
///
/// INFO `latencystats` reads percentiles from it exactly as Redis does (the highest value
/// equivalent to the first slot at which the count reaches the percentile's), and
/// LATENCY HISTOGRAM sums its slots into Redis's power-of-two buckets.
///
/// Written only by the loop that owns it (``Atomic/addOwned(_:)``; ``reset()`` too);
/// read from any thread: a bucket's address is published with a releasing store once
/// its counters are zeroed, and never freed before the histogram.
public final class LatencyHistogram: @unchecked Sendable {
    // Invariant: `buckets` holds `bucketCount` addresses (0: not yet allocated), each
    // of `subBuckets` initialized atomics, written only by the owning loop.
    public static let firstBucket = 2
    public static let bucketCount = 21
    public static let subBuckets = 128

    /// Calls of 0 µs, recorded by Redis as 1 ns.
    private let underOneMicrosecond = Atomic<Int>(0)
    private let buckets: UnsafeMutablePointer<Atomic<Int>>

    public init() {
        buckets = .allocate(capacity: Self.bucketCount)
        for i in 0..<Self.bucketCount { (buckets + i).initialize(to: Atomic(0)) }
    }

    deinit {
        for i in 0..<Self.bucketCount {
            if let counters = ownCounters(i) {
                counters.deinitialize(count: Self.subBuckets)
                counters.deallocate()
            }
        }
        buckets.deinitialize(count: Self.bucketCount)
        buckets.deallocate()
    }

    /// Counts a call of `micros` (on the owning loop); over 1 s counts as 1 s, as Redis's.
    @inlinable @inline(__always)
    public func record(micros: Int) {
        guard micros > 0 else { return recordUnderOneMicrosecond() }
        let nanos = micros >= 1_000_000 ? 1_000_000_000 : micros &* 1000
        let bucket = (Int.bitWidth &- 8) &- nanos.leadingZeroBitCount
        record(bucket: bucket, sub: nanos &>> bucket)
    }

    @usableFromInline
    func recordUnderOneMicrosecond() { underOneMicrosecond.addOwned(1) }

    @usableFromInline
    func record(bucket: Int, sub: Int) {
        let index = bucket &- Self.firstBucket
        let counters = ownCounters(index) ?? allocate(index)
        counters[sub &- Self.subBuckets].addOwned(1)
    }

    /// A bucket's counters, read on the owning loop (which wrote the address).
    private func ownCounters(_ index: Int) -> UnsafeMutablePointer<Atomic<Int>>? {
        UnsafeMutablePointer(bitPattern: buckets[index].load(ordering: .relaxed))
    }

    /// A bucket's counters, read from any thread: zeroed before the address was published.
    private func publishedCounters(_ index: Int) -> UnsafeMutablePointer<Atomic<Int>>? {
        UnsafeMutablePointer(bitPattern: buckets[index].load(ordering: .acquiring))
    }

    private func allocate(_ index: Int) -> UnsafeMutablePointer<Atomic<Int>> {
        let counters = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: Self.subBuckets)
        for i in 0..<Self.subBuckets { (counters + i).initialize(to: Atomic(0)) }
        buckets[index].store(Int(bitPattern: counters), ordering: .releasing)
        return counters
    }

    /// CONFIG RESETSTAT: every count back to zero, on the owning loop. The buckets stay
    /// allocated (a reader may hold one); a command with no calls is listed nowhere.
    public func reset() {
        underOneMicrosecond.store(0, ordering: .relaxed)
        for i in 0..<Self.bucketCount {
            guard let counters = ownCounters(i) else { continue }
            for j in 0..<Self.subBuckets { counters[j].store(0, ordering: .relaxed) }
        }
    }

    /// Each slot with calls, in ascending order of value: its highest equivalent value
    /// in ns and its count.
    public func forEachSlot(_ body: (_ highestNanos: Int, _ count: Int) -> Void) {
        let under = underOneMicrosecond.load(ordering: .relaxed)
        if under > 0 { body(1, under) }
        for i in 0..<Self.bucketCount {
            guard let counters = publishedCounters(i) else { continue }
            let bucket = i + Self.firstBucket
            for j in 0..<Self.subBuckets {
                let count = counters[j].load(ordering: .relaxed)
                if count > 0 { body(((Self.subBuckets + j) << bucket) + (1 << bucket) - 1, count) }
            }
        }
    }

    /// The slots of several loops' histograms of one command, merged and in order.
    public static func merged(_ histograms: [LatencyHistogram]) -> [(highestNanos: Int, count: Int)] {
        var counts: [Int: Int] = [:]
        for h in histograms { h.forEachSlot { counts[$0, default: 0] += $1 } }
        return counts.sorted { $0.key < $1.key }.map { (highestNanos: $0.key, count: $0.value) }
    }

    /// LATENCY HISTOGRAM's buckets (``LatencyBuckets``): the calls of each.
    public static func latencyBuckets(_ slots: [(highestNanos: Int, count: Int)]) -> [Int] {
        var out = [Int](repeating: 0, count: LatencyBuckets.count)
        for slot in slots { out[LatencyBuckets.index(nanos: slot.highestNanos)] += slot.count }
        return out
    }

    /// The value at each percentile, in µs, as Redis's `hdr_value_at_percentile`: the
    /// highest value equivalent to the first slot whose running count reaches
    /// `percentile / 100 · total` rounded (at least 1). Nil when there are no calls.
    public static func percentiles(_ slots: [(highestNanos: Int, count: Int)], _ percentiles: [Double]) -> [Double]? {
        let total = slots.reduce(0) { $0 + $1.count }
        guard total > 0 else { return nil }
        return percentiles.map { p in
            let wanted = max(1, Int((min(p, 100) / 100) * Double(total) + 0.5))
            var running = 0
            for slot in slots {
                running += slot.count
                if running >= wanted { return Double(slot.highestNanos) / 1000 }
            }
            return Double(slots[slots.count - 1].highestNanos) / 1000
        }
    }
}
