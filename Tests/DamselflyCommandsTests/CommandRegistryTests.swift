import Testing
@testable import DamselflyCommands

/// ``CommandRegistry/lookup(_:)``: the byte-keyed index finds what the `commands`
/// dictionary holds, whatever the case of the name, and nothing else.
@Suite struct CommandRegistryTests {
    func lookup(_ registry: CommandRegistry, _ name: String) -> CommandSpec? {
        Array(name.utf8).withUnsafeBytes { registry.lookup($0) }
    }

    @Test func everyRegisteredNameIsFoundInAnyCase() {
        let registry = CommandRegistry(loopCount: 1)
        StringFamily.register(registry)
        GenericFamily.register(registry)
        ListFamily.register(registry)
        StreamFamily.register(registry)
        // More names than the index's first table holds: it grew on the way.
        #expect(registry.commands.count > 64)
        for (name, spec) in registry.commands {
            #expect(lookup(registry, name) === spec)
            #expect(lookup(registry, name.uppercased()) === spec)
        }
        #expect(lookup(registry, "SeT")?.name == "set")
        #expect(lookup(registry, "nosuchcommand") == nil)
        #expect(lookup(registry, "") == nil)
        #expect(lookup(registry, "se") == nil)
        #expect(lookup(registry, "sets") == nil)
        #expect(lookup(registry, String(repeating: "x", count: 40)) == nil)
    }

    @Test func registeringANameAgainReplacesItsSpec() {
        let registry = CommandRegistry(loopCount: 1)
        registry.register("ping", arity: 1, flags: [], group: "test") { _ in }
        let first = lookup(registry, "PING")
        registry.register("ping", arity: -1, flags: [], group: "test") { _ in }
        #expect(lookup(registry, "ping") !== first)
        #expect(lookup(registry, "ping")?.arity == -1)
        #expect(registry.commands.count == 1)
    }

    // MARK: - Latency buckets

    /// The formula the bucket of a call's microseconds was once computed with, kept here to
    /// compare ``LatencyBuckets/index(nanos:)`` with: clamp to [0, 1 s] in ns, bucket 0 up to 1024 ns, else the power of two
    /// below, one more when above that bucket's upper value.
    static func referenceBucket(micros: Int) -> Int {
        let nanos = min(max(micros, 0) * 1000, 1_000_000_000)
        guard nanos > 1024 else { return 0 }
        let k = max(0, (Int.bitWidth - 1 - nanos.leadingZeroBitCount) - 10)
        let upper = (1 << (10 + k)) + (1 << (3 + k)) - 1
        return nanos > upper ? k + 1 : k
    }

    /// What Redis records for a call of `micros`: its nanoseconds, at least 1, at most 1 s.
    static func recordedNanos(micros: Int) -> Int {
        micros <= 0 ? 1 : micros >= 1_000_000 ? 1_000_000_000 : micros * 1000
    }

    @Test func latencyBucketIndexMatchesTheReferenceFormula() {
        var inputs: [Int] = [Int.min, -1_000_000, -2, -1, 0, 1, 2, 3, 999_999, 1_000_000, 1_000_001,
                             2_000_000, 1_000_000_000, Int.max / 1000]
        inputs += Array(0...70_000)
        // Both sides of every bucket's upper bound, in whole microseconds.
        for k in 0..<LatencyBuckets.count {
            let upperMicros = LatencyBuckets.upperNanos(k) / 1000
            inputs += (upperMicros - 2)...(upperMicros + 2)
            inputs += ((1 << (10 + k)) / 1000 - 2)...((1 << (10 + k)) / 1000 + 2)
        }
        var sample = 70_001
        while sample < 3_000_000 {
            inputs.append(sample)
            sample += 97
        }
        var mismatches: [Int] = []
        for micros in inputs {
            // The old formula trapped on products past Int.max; the clamp is what it meant.
            let expected = micros > Int.max / 1000 ? LatencyBuckets.count - 1 : Self.referenceBucket(micros: micros)
            if LatencyBuckets.index(nanos: Self.recordedNanos(micros: micros)) != expected { mismatches.append(micros) }
        }
        #expect(mismatches.isEmpty, "first mismatches: \(mismatches.prefix(10))")
        #expect(LatencyBuckets.index(nanos: Self.recordedNanos(micros: Int.max)) == LatencyBuckets.count - 1)
        #expect(LatencyBuckets.index(nanos: 1_000_000_000) == LatencyBuckets.count - 1)
    }

    @Test func latencyBucketUpperBoundsAreRedisValues() {
        for k in 0..<LatencyBuckets.count {
            #expect(LatencyBuckets.upperNanos(k) == (1 << (10 + k)) + (1 << (3 + k)) - 1)
        }
        #expect((0..<LatencyBuckets.count).map(LatencyBuckets.labelMicros).prefix(8) == [1, 2, 4, 8, 16, 33, 66, 132])
    }
}
