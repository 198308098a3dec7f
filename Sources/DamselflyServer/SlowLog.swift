import DamselflyCommands
import DamselflyRuntime
import Synchronization

/// SLOWLOG: commands slower than `slowlog-log-slower-than` µs, newest first,
/// at most `slowlog-max-len` entries. Touched only for slow commands, so a
/// mutex is fine here (it is not on the per-command path).
final class SlowLog: Sendable {
    struct Entry: Sendable {
        let id: Int
        let timestamp: Int
        let durationMicros: Int
        let arguments: [[UInt8]]
        let clientAddress: String
        let clientName: String
    }

    private struct State {
        var entries: [Entry] = []
        var nextID = 0
        var threshold: Int
        var maxLength: Int
    }

    private let state: Mutex<State>
    private let thresholdCache: Atomic<Int>

    init(thresholdMicros: Int, maxLength: Int) {
        state = Mutex(State(threshold: thresholdMicros, maxLength: maxLength))
        thresholdCache = Atomic(thresholdMicros)
    }

    /// Whether a command that took `micros` goes into the log (negative threshold disables).
    @inline(__always)
    func isSlow(_ micros: Int) -> Bool {
        let threshold = thresholdCache.load(ordering: .relaxed)
        return threshold >= 0 && micros >= threshold
    }

    func configure(thresholdMicros: Int, maxLength: Int) {
        thresholdCache.store(thresholdMicros, ordering: .relaxed)
        state.withLock {
            $0.threshold = thresholdMicros
            $0.maxLength = maxLength
            if $0.entries.count > maxLength { $0.entries.removeLast($0.entries.count - maxLength) }
        }
    }

    func record(durationMicros: Int, arguments: [[UInt8]], client: ClientState) {
        // Redis keeps at most 32 arguments and 128 bytes of each.
        var kept = arguments.prefix(32).map { arg -> [UInt8] in
            arg.count > 128 ? Array(arg.prefix(128)) + Array("... (\(arg.count - 128) more bytes)".utf8) : arg
        }
        if arguments.count > 32 { kept[31] = Array("... (\(arguments.count - 31) more arguments)".utf8) }
        let address = client.address, name = client.name
        state.withLock {
            let entry = Entry(
                id: $0.nextID, timestamp: Int(Clock.wallMillis() / 1000), durationMicros: durationMicros,
                arguments: kept, clientAddress: address, clientName: name)
            $0.nextID += 1
            $0.entries.insert(entry, at: 0)
            if $0.entries.count > $0.maxLength { $0.entries.removeLast() }
        }
    }

    func get(_ count: Int?) -> [Entry] {
        state.withLock { s in
            guard let count, count >= 0 else { return Array(s.entries.prefix(10)) }
            return Array(s.entries.prefix(count))
        }
    }

    var length: Int { state.withLock { $0.entries.count } }
    func reset() { state.withLock { $0.entries.removeAll() } }
}
