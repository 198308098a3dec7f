import DamselflyRuntime
import Synchronization

/// MONITOR's receivers and the line every command is reported with.
///
/// Off the command path while nobody monitors: one relaxed load of
/// ``isActive`` per command. With monitors, the thread that runs a command
/// formats its line once and hands it to every receiver, which posts it to
/// its own connection's loop (a monitor is an ordinary connection on some
/// loop; only that loop writes to its socket).
public final class MonitorFeed: Sendable {
    public typealias Receiver = @Sendable ([UInt8]) -> Void

    private let receivers = Mutex<[(id: Int, deliver: Receiver)]>([])
    private let active = Atomic<Int>(0)

    public init() {}

    /// Whether any client is in MONITOR mode.
    @inline(__always)
    public var isActive: Bool { active.load(ordering: .relaxed) > 0 }

    public func add(id: Int, _ deliver: @escaping Receiver) {
        receivers.withLock { list in
            list.append((id, deliver))
            active.store(list.count, ordering: .relaxed)
        }
    }

    public func remove(id: Int) {
        receivers.withLock { list in
            list.removeAll { $0.id == id }
            active.store(list.count, ordering: .relaxed)
        }
    }

    /// Reports one command: `source` is the client's address, or `lua` for
    /// a script's redis.call, as Redis writes it.
    public func feed(database: Int, source: String, name: String, count: Int, argument: (Int) -> [UInt8]) {
        let targets = receivers.withLock { $0.map(\.deliver) }
        guard !targets.isEmpty else { return }
        let line = Self.line(
            nowMicros: Clock.wallMicros(), database: database, source: source, name: name, count: count,
            argument: argument)
        for deliver in targets { deliver(line) }
    }

    /// `+<seconds>.<micros> [<db> <source>] "arg" ...` with Redis's quoting
    /// (`sdscatrepr`) and the secrets of AUTH, HELLO ... AUTH and MIGRATE ...
    /// AUTH/AUTH2 replaced by `(redacted)`.
    static func line(
        nowMicros: Int64, database: Int, source: String, name: String, count: Int, argument: (Int) -> [UInt8]
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        let micros = String(nowMicros % 1_000_000)
        out.append(UInt8(ascii: "+"))
        out.append(contentsOf: Array("\(nowMicros / 1_000_000).".utf8))
        out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: 6 - micros.utf8.count))
        out.append(contentsOf: Array(micros.utf8))
        out.append(contentsOf: Array(" [\(database) \(source)]".utf8))
        let redacted = redactedPositions(name: name, count: count, argument: argument)
        for i in 0..<count {
            out.append(UInt8(ascii: " "))
            if redacted.contains(i) {
                out.append(contentsOf: Array("\"(redacted)\"".utf8))
            } else {
                quote(argument(i), into: &out)
            }
        }
        out.append(contentsOf: [13, 10])
        return out
    }

    static func redactedPositions(name: String, count: Int, argument: (Int) -> [UInt8]) -> Set<Int> {
        func isToken(_ i: Int, _ token: String) -> Bool {
            String(decoding: argument(i), as: UTF8.self).lowercased() == token
        }
        switch name {
        case "auth":
            return Set(1..<max(count, 1))
        case "hello":
            var i = 2
            while i < count {
                if isToken(i, "auth") { return Set([i + 1, i + 2].filter { $0 < count }) }
                i += 1
            }
        case "migrate":
            var i = 6
            while i < count {
                if isToken(i, "auth") { return Set([i + 1].filter { $0 < count }) }
                if isToken(i, "auth2") { return Set([i + 1, i + 2].filter { $0 < count }) }
                i += 1
            }
        default:
            break
        }
        return []
    }

    /// Redis's `sdscatrepr`: quoted, with C escapes and `\xHH` for the rest.
    static func quote(_ bytes: [UInt8], into out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for b in bytes {
            switch b {
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case 10: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 13: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 9: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 7: out.append(contentsOf: [92, UInt8(ascii: "a")])
            case 8: out.append(contentsOf: [92, UInt8(ascii: "b")])
            case 32...126: out.append(b)
            default: out.append(contentsOf: [92, UInt8(ascii: "x"), hex[Int(b >> 4)], hex[Int(b & 15)]])
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
