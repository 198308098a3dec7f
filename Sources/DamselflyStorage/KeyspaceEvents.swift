import Synchronization

/// The classes of keyspace notifications (`notify-keyspace-events`), with Redis's bit values so
/// the canonical text and the masks match redis-server's.
public struct KeyspaceEventClass: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    @inlinable public init(rawValue: Int) { self.rawValue = rawValue }

    public static let keyspace = KeyspaceEventClass(rawValue: 1 << 0)   // K
    public static let keyevent = KeyspaceEventClass(rawValue: 1 << 1)   // E
    public static let generic = KeyspaceEventClass(rawValue: 1 << 2)    // g
    public static let string = KeyspaceEventClass(rawValue: 1 << 3)     // $
    public static let list = KeyspaceEventClass(rawValue: 1 << 4)       // l
    public static let set = KeyspaceEventClass(rawValue: 1 << 5)        // s
    public static let hash = KeyspaceEventClass(rawValue: 1 << 6)       // h
    public static let zset = KeyspaceEventClass(rawValue: 1 << 7)       // z
    public static let expired = KeyspaceEventClass(rawValue: 1 << 8)    // x
    public static let evicted = KeyspaceEventClass(rawValue: 1 << 9)    // e
    public static let stream = KeyspaceEventClass(rawValue: 1 << 10)    // t
    public static let keyMiss = KeyspaceEventClass(rawValue: 1 << 11)   // m (not part of A)
    public static let module = KeyspaceEventClass(rawValue: 1 << 13)    // d
    public static let new = KeyspaceEventClass(rawValue: 1 << 14)       // n (not part of A)
    /// `A`: every class but key misses and new keys, as Redis defines it.
    public static let all: KeyspaceEventClass = [
        .generic, .string, .list, .set, .hash, .zset, .expired, .evicted, .stream, .module,
    ]

    /// The letters of `notify-keyspace-events`, in the order Redis prints the classes.
    private static let letters: [(Character, KeyspaceEventClass)] = [
        ("g", .generic), ("$", .string), ("l", .list), ("s", .set), ("h", .hash), ("z", .zset),
        ("x", .expired), ("e", .evicted), ("t", .stream), ("d", .module), ("n", .new),
    ]

    /// Parses the parameter's text; nil when a character names no class (Redis then refuses
    /// the whole value).
    public static func parse(_ text: String) -> KeyspaceEventClass? {
        var flags: KeyspaceEventClass = []
        for c in text {
            switch c {
            case "A": flags.formUnion(.all)
            case "K": flags.formUnion(.keyspace)
            case "E": flags.formUnion(.keyevent)
            case "m": flags.formUnion(.keyMiss)
            default:
                guard let entry = letters.first(where: { $0.0 == c }) else { return nil }
                flags.formUnion(entry.1)
            }
        }
        return flags
    }

    /// The text CONFIG GET shows: `A` for the whole set, else each class letter, then K, E, m.
    /// As in Redis, `n` is printed only without `A` (with `A` it is set but not shown).
    public var canonicalText: String {
        var text = ""
        if isSuperset(of: .all) {
            text = "A"
        } else {
            for (letter, flag) in Self.letters where contains(flag) { text.append(letter) }
        }
        if contains(.keyspace) { text.append("K") }
        if contains(.keyevent) { text.append("E") }
        if contains(.keyMiss) { text.append("m") }
        return text
    }
}

/// The server's keyspace notifications: the configured classes and where messages go.
///
/// Commands emit from their shard's thread (``Database/notify(_:_:key:)`` and the command
/// context's hook). Each database keeps a plain copy of the classes (``Database/notifyFlags``)
/// that the shard's own thread updates, so with notifications off (the default) a notifying
/// path costs one load and compare of a field it already has in cache. The publish function
/// (the server's pub/sub registry) posts every message to each receiver's loop through that
/// loop's FIFO inbox, so one subscriber sees one shard's events in the order they happened.
public final class KeyspaceEvents: Sendable {
    /// The configured classes (authoritative copy, read when a database is created).
    public let flags = Atomic<Int>(0)
    private let sink = Mutex<(@Sendable (_ channel: [UInt8], _ message: [UInt8]) -> Void)?>(nil)

    public init() {}

    /// Where messages go (the server's PUBLISH), set once at start-up.
    public func connect(_ publish: @escaping @Sendable (_ channel: [UInt8], _ message: [UInt8]) -> Void) {
        sink.withLock { $0 = publish }
    }

    /// Publishes `__keyspace@db__:key → event` and `__keyevent@db__:event → key`, as the
    /// configured K and E classes ask, in Redis's order (keyspace first).
    public func emit(_ event: StaticString, key: [UInt8], database: Int, flags: Int) {
        guard let publish = sink.withLock({ $0 }) else { return }
        let eventBytes = Array(UnsafeRawBufferPointer(start: event.utf8Start, count: event.utf8CodeUnitCount))
        let db = Array(String(database).utf8)
        if flags & KeyspaceEventClass.keyspace.rawValue != 0 {
            publish(Array("__keyspace@".utf8) + db + Array("__:".utf8) + key, eventBytes)
        }
        if flags & KeyspaceEventClass.keyevent.rawValue != 0 {
            publish(Array("__keyevent@".utf8) + db + Array("__:".utf8) + eventBytes, key)
        }
    }
}
