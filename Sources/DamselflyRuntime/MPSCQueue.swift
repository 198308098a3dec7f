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
    public func tryPush(_ value: consuming Element) -> Bool {
        var position = tail.load(ordering: .relaxed)
        var slot: Int
        while true {
            slot = position & mask
            let sequence = sequences[slot].load(ordering: .acquiring)
            let difference = sequence - position
            if difference == 0 {
                let (exchanged, original) = tail.compareExchange(
                    expected: position, desired: position + 1, ordering: .relaxed)
                if exchanged { break }
                position = original
            } else if difference < 0 {
                return false
            } else {
                position = tail.load(ordering: .relaxed)
            }
        }
        // Outside the loop, so the value is moved in, not copied.
        values[slot] = consume value
        sequences[slot].store(position + 1, ordering: .releasing)
        return true
    }

    /// Moves the `count` elements at `source`, in order, into the queue as one
    /// contiguous run claimed with a single compare-and-swap on the tail (one
    /// message per destination: a loop sends what it held for another in one
    /// go). Returns false, moving nothing, when the queue has no room for all
    /// of them; on success `source` is left uninitialized.
    ///
    /// Room for the run's last slot means room for all of it: the consumer
    /// frees slots in order, so once the slot of position `p + n - 1` is free
    /// for this lap, so is every slot from `p` on.
    public func tryPush(movingFrom source: UnsafeMutablePointer<Element>, count n: Int) -> Bool {
        guard n > 0 else { return true }
        guard n <= capacity else { return false }
        var position = tail.load(ordering: .relaxed)
        while true {
            let last = position + n - 1
            let difference = sequences[last & mask].load(ordering: .acquiring) - last
            if difference == 0 {
                let (exchanged, original) = tail.compareExchange(
                    expected: position, desired: position + n, ordering: .relaxed)
                if exchanged {
                    for i in 0..<n {
                        let slot = (position + i) & mask
                        values[slot] = (source + i).move()
                        sequences[slot].store(position + i + 1, ordering: .releasing)
                    }
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
