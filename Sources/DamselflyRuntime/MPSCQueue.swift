import Synchronization

/// A bounded, lock-free, multi-producer single-consumer queue (Dmitry Vyukov's
/// bounded queue with per-slot sequence numbers).
///
/// It is how shard threads talk: any thread may ``tryPush(_:)``, only the owning
/// thread calls ``pop()``. Being bounded keeps a runaway producer from eating
/// memory; a full queue makes the producer help by draining its own inbox
/// before it retries (see ``EventLoop/post(_:)``), so two threads that post to
/// each other cannot deadlock.
public final class MPSCQueue<Element>: @unchecked Sendable {
    // Invariant behind @unchecked Sendable: `values[i]` is written only by the
    // producer that won slot i (CAS on `tail`) and read only by the single
    // consumer after the slot's sequence says it is published; the sequence
    // store/load pairs are release/acquire.
    private let capacity: Int
    private let mask: Int
    private let sequences: UnsafeMutablePointer<Atomic<Int>>
    private let values: UnsafeMutablePointer<Element?>
    private let tail = Atomic<Int>(0)
    private var head = 0

    public init(capacity requested: Int) {
        var size = 2
        while size < requested { size <<= 1 }
        capacity = size
        mask = size - 1
        sequences = .allocate(capacity: size)
        values = .allocate(capacity: size)
        for i in 0..<size {
            (sequences + i).initialize(to: Atomic(i))
            (values + i).initialize(to: nil)
        }
    }

    deinit {
        sequences.deinitialize(count: capacity)
        sequences.deallocate()
        values.deinitialize(count: capacity)
        values.deallocate()
    }

    /// Appends `value`; returns false when the queue is full.
    public func tryPush(_ value: Element) -> Bool {
        var position = tail.load(ordering: .relaxed)
        while true {
            let slot = position & mask
            let sequence = sequences[slot].load(ordering: .acquiring)
            let difference = sequence - position
            if difference == 0 {
                let (exchanged, original) = tail.compareExchange(
                    expected: position, desired: position + 1, ordering: .relaxed)
                if exchanged {
                    values[slot] = value
                    sequences[slot].store(position + 1, ordering: .releasing)
                    return true
                }
                position = original
            } else if difference < 0 {
                return false
            } else {
                position = tail.load(ordering: .relaxed)
            }
        }
    }

    /// Removes the oldest element; consumer thread only.
    public func pop() -> Element? {
        let slot = head & mask
        let sequence = sequences[slot].load(ordering: .acquiring)
        guard sequence - (head + 1) == 0 else { return nil }
        let value = values[slot].take()
        sequences[slot].store(head + capacity, ordering: .releasing)
        head += 1
        return value
    }

    /// Whether a pop would find something (approximate from other threads).
    public var isEmpty: Bool {
        let slot = head & mask
        return sequences[slot].load(ordering: .acquiring) - (head + 1) != 0
    }
}
