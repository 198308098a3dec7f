import DamselflyCommands
import Testing

/// The per-command latency histogram behind INFO latencystats and LATENCY HISTOGRAM:
/// Redis 7.0's HDR layout (1 ns to 1 s, two significant digits) and its percentile rule.
struct LatencyHistogramTests {
    private func percentiles(_ histograms: [LatencyHistogram], _ ps: [Double] = [50, 99, 99.9]) -> [Double]? {
        LatencyHistogram.percentiles(LatencyHistogram.merged(histograms), ps)
    }

    /// Values redis-server prints for single calls of 0, 1, 14 and 2,146 µs and over 1 s:
    /// the highest value of the slot, in µs.
    @Test(arguments: [(0, 0.001), (1, 1.003), (14, 14.015), (2146, 2146.303), (5_000_000, 1_002_438.655)])
    func aSingleCallReadsAsItsSlotsHighestValue(micros: Int, expected: Double) {
        let h = LatencyHistogram()
        h.record(micros: micros)
        #expect(percentiles([h]) == [expected, expected, expected])
    }

    /// The count at a percentile is rounded half up and at least 1; the first slot whose
    /// running count reaches it answers. 98 calls of 1 µs and 2 of 100 µs: p50 is the
    /// 50th call (1 µs), p98.4 the 98th (98.9 rounds down), p98.6 the 99th (100 µs).
    @Test func percentilesCountCallsAsRedisDoes() {
        let h = LatencyHistogram()
        for _ in 0..<98 { h.record(micros: 1) }
        for _ in 0..<2 { h.record(micros: 100) }
        #expect(percentiles([h], [1, 50, 98, 98.4, 98.6, 99, 99.9, 100]) ==
                [1.003, 1.003, 1.003, 1.003, 100.351, 100.351, 100.351, 100.351])
    }

    @Test func loopsMergeAndResetEmpties() {
        let a = LatencyHistogram(), b = LatencyHistogram()
        a.record(micros: 3)
        b.record(micros: 3)
        b.record(micros: 700)
        let slots = LatencyHistogram.merged([a, b])
        #expect(slots.map(\.count) == [2, 1])
        #expect(percentiles([a, b]) == [3.007, 700.415, 700.415])
        a.reset()
        b.reset()
        #expect(percentiles([a, b]) == nil)
        // Counting resumes in the buckets kept allocated.
        b.record(micros: 700)
        #expect(percentiles([a, b]) == [700.415, 700.415, 700.415])
    }

    /// LATENCY HISTOGRAM's power-of-two buckets from the slots: 0 and 1 µs in the first
    /// (up to 1,031 ns), 2 µs in the second (up to 2,063 ns), 1 s in the last.
    @Test func latencyHistogramBucketsFromSlots() {
        let h = LatencyHistogram()
        for micros in [0, 1, 1, 2, 3, 1_000_000] { h.record(micros: micros) }
        let buckets = LatencyHistogram.latencyBuckets(LatencyHistogram.merged([h]))
        #expect(buckets[0] == 3)
        #expect(buckets[1] == 1)
        #expect(buckets[2] == 1)
        #expect(buckets[LatencyBuckets.count - 1] == 1)
        #expect(buckets.reduce(0, +) == 6)
    }
}
