import DamselflyRuntime
import Synchronization
import Testing

/// ``Immortal`` relies on a Swift runtime call that is not public API: these
/// check that it still does what the server counts on.
@Suite struct ImmortalTests {
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        var count: Int { value.load(ordering: .relaxed) }
    }

    final class Tracked: Sendable {
        let deinits: Counter
        init(_ deinits: Counter) { self.deinits = deinits }
        deinit { deinits.value.add(1, ordering: .relaxed) }
    }

    @Test func anImmortalObjectOutlivesItsLastReference() {
        let deinits = Counter()
        do {
            let mortal = Tracked(deinits)
            _ = mortal
        }
        #expect(deinits.count == 1, "a mortal object is freed")
        do {
            let immortal = Tracked(deinits)
            Immortal.make(immortal)
            // Retains and releases on two threads leave it alive.
            let thread = LoopThread.spawn(name: "immortal-test") {
                for _ in 0..<1000 { _ = [immortal, immortal] }
            }
            for _ in 0..<1000 { _ = [immortal, immortal] }
            LoopThread.join(thread)
        }
        #expect(deinits.count == 1, "no deinit once immortal")
    }

    @Test func anImmortalObjectIsNeverUniquelyReferenced() {
        var object = Tracked(Counter())
        #expect(isKnownUniquelyReferenced(&object))
        Immortal.make(object)
        #expect(!isKnownUniquelyReferenced(&object))
    }
}
