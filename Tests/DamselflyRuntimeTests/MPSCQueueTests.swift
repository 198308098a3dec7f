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
