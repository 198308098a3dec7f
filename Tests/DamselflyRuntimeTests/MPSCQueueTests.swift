import DamselflyRuntime
import Glibc
import Synchronization
import Testing

@Suite struct MPSCQueueTests {
    @Test func fifoOnOneThread() {
        let queue = MPSCQueue<Int>(capacity: 8)
        #expect(queue.isEmpty)
        #expect(queue.pop() == nil)
        for i in 0..<5 { #expect(queue.tryPush(i)) }
        #expect(!queue.isEmpty)
        for i in 0..<5 { #expect(queue.pop() == i) }
        #expect(queue.pop() == nil)
        #expect(queue.isEmpty)
    }

    @Test func fullQueueRefusesUntilPopped() {
        // The capacity is rounded up to a power of two.
        let queue = MPSCQueue<Int>(capacity: 3)
        for i in 0..<4 { #expect(queue.tryPush(i), "push \(i)") }
        #expect(!queue.tryPush(4))
        #expect(!queue.tryPush(5))
        #expect(queue.pop() == 0)
        #expect(queue.tryPush(4))
        #expect(!queue.tryPush(5))
        for i in 1...4 { #expect(queue.pop() == i) }
        #expect(queue.pop() == nil)
        // Wrapping around many times keeps order and capacity.
        for round in 0..<100 {
            for i in 0..<4 { #expect(queue.tryPush(round * 4 + i)) }
            #expect(!queue.tryPush(-1))
            for i in 0..<4 { #expect(queue.pop() == round * 4 + i) }
        }
    }

    @Test func elementsAreReleasedWhenPopped() {
        final class Token: Sendable {}
        let queue = MPSCQueue<Token>(capacity: 4)
        weak var weakToken: Token?
        do {
            let token = Token()
            weakToken = token
            #expect(queue.tryPush(token))
        }
        #expect(weakToken != nil)
        _ = queue.pop()
        #expect(weakToken == nil)
    }

    /// A run goes in whole or not at all, in order, moved out of its buffer;
    /// room for its last slot is room for all of it, across the wrap.
    @Test func runsAreMovedInWholeOrNotAtAll() {
        let queue = MPSCQueue<Int>(capacity: 8)
        let buffer = UnsafeMutablePointer<Int>.allocate(capacity: 16)
        defer { buffer.deallocate() }
        func fill(_ values: Range<Int>) { for (i, v) in values.enumerated() { (buffer + i).initialize(to: v) } }
        fill(0..<5)
        #expect(queue.tryPush(movingFrom: buffer, count: 5))
        fill(5..<9)
        // Four more do not fit in the three slots left: nothing goes in.
        #expect(!queue.tryPush(movingFrom: buffer, count: 4))
        #expect(queue.tryPush(movingFrom: buffer, count: 3))
        #expect(!queue.tryPush(movingFrom: buffer + 3, count: 1))
        for i in 0..<8 { #expect(queue.pop() == i) }
        #expect(queue.pop() == nil)
        // Runs that wrap around the end of the slots keep their order.
        var next = 0, popped = 0
        for round in 0..<50 {
            let n = round % 7 + 1
            fill(next..<next + n)
            #expect(queue.tryPush(movingFrom: buffer, count: n))
            next += n
            while let v = queue.pop() {
                #expect(v == popped)
                popped += 1
            }
        }
        #expect(popped == next)
        // More than the queue holds is refused; an empty run is nothing to do.
        #expect(!queue.tryPush(movingFrom: buffer, count: 9))
        #expect(queue.tryPush(movingFrom: buffer, count: 0))
        #expect(queue.isEmpty)
    }

    /// Runs from several producers arrive whole: no other producer's element
    /// falls inside one, and each producer's runs keep their order.
    @Test func runsFromSeveralProducersStayWholeAndInOrder() {
        let queue = MPSCQueue<(producer: Int, sequence: Int)>(capacity: 64)
        let producers = 3
        let runs = 5_000
        let runLength = 5
        let threads = (0..<producers).map { p in
            LoopThread.spawn(name: "runs\(p)") { [queue] in
                let buffer = UnsafeMutablePointer<(producer: Int, sequence: Int)>.allocate(capacity: runLength)
                for r in 0..<runs {
                    for i in 0..<runLength { (buffer + i).initialize(to: (p, r * runLength + i)) }
                    while !queue.tryPush(movingFrom: buffer, count: runLength) { sched_yield() }
                }
                buffer.deallocate()
            }
        }
        var next = [Int](repeating: 0, count: producers)
        var received = 0, broken = 0
        var current = -1, left = 0
        while received < producers * runs * runLength {
            guard let (p, i) = queue.pop() else {
                sched_yield()
                continue
            }
            if left == 0 { current = p; left = runLength }
            if p != current || i != next[p] { broken += 1 }
            next[p] = i + 1
            left -= 1
            received += 1
        }
        for thread in threads { LoopThread.join(thread) }
        #expect(broken == 0)
        #expect(queue.pop() == nil)
    }

    @Test func fifoPerProducerWithSeveralProducers() {
        // A small queue so producers keep hitting "full" and retrying.
        let queue = MPSCQueue<(producer: Int, sequence: Int)>(capacity: 64)
        let producers = 4
        let perProducer = 50_000
        let threads = (0..<producers).map { p in
            LoopThread.spawn(name: "producer\(p)") { [queue] in
                for i in 0..<perProducer {
                    while !queue.tryPush((p, i)) { sched_yield() }
                }
            }
        }
        var next = [Int](repeating: 0, count: producers)
        var received = 0
        var outOfOrder = 0
        while received < producers * perProducer {
            guard let item = queue.pop() else {
                sched_yield()
                continue
            }
            let (p, i) = item
            if i != next[p] { outOfOrder += 1 }
            next[p] = i + 1
            received += 1
        }
        for thread in threads { LoopThread.join(thread) }
        #expect(outOfOrder == 0)
        #expect(next == [Int](repeating: perProducer, count: producers))
        #expect(queue.pop() == nil)
    }
}
