import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import Synchronization

/// The server's channel and pattern subscriptions.
///
/// PUBLISH is not on the key-value path, so one mutex-guarded registry is
/// enough: PUBLISH takes a snapshot of the receivers under the lock and posts
/// the message to each receiver's loop, where its connection writes it.
final class PubSubRegistry: Sendable {
    private struct State {
        var channels: [[UInt8]: [Connection]] = [:]
        var patterns: [[UInt8]: [Connection]] = [:]
    }

    private let state = Mutex(State())

    func subscribe(_ connection: Connection, channel: [UInt8]) {
        state.withLock { $0.channels[channel, default: []].append(connection) }
    }

    func unsubscribe(_ connection: Connection, channel: [UInt8]) {
        state.withLock { s in
            guard var list = s.channels[channel] else { return }
            list.removeAll { $0 === connection }
            s.channels[channel] = list.isEmpty ? nil : list
        }
    }

    func psubscribe(_ connection: Connection, pattern: [UInt8]) {
        state.withLock { $0.patterns[pattern, default: []].append(connection) }
    }

    func punsubscribe(_ connection: Connection, pattern: [UInt8]) {
        state.withLock { s in
            guard var list = s.patterns[pattern] else { return }
            list.removeAll { $0 === connection }
            s.patterns[pattern] = list.isEmpty ? nil : list
        }
    }

    /// Delivers `message` to every subscriber of `channel` and every matching
    /// pattern subscriber; returns how many received it.
    func publish(channel: [UInt8], message: [UInt8]) -> Int {
        let (direct, patterned) = state.withLock { s -> ([Connection], [([UInt8], Connection)]) in
            let direct = s.channels[channel] ?? []
            var patterned: [([UInt8], Connection)] = []
            for (pattern, list) in s.patterns {
                let matches = pattern.withUnsafeBytes { p in
                    channel.withUnsafeBytes { c in GlobPattern.matches(pattern: p, string: c) }
                }
                if matches { for connection in list { patterned.append((pattern, connection)) } }
            }
            return (direct, patterned)
        }
        for connection in direct {
            connection.loop.post { connection.pushMessage([Array("message".utf8), channel, message]) }
        }
        for (pattern, connection) in patterned {
            connection.loop.post { connection.pushMessage([Array("pmessage".utf8), pattern, channel, message]) }
        }
        return direct.count + patterned.count
    }

    /// Active channels (with at least one subscriber) matching `pattern`.
    func channels(matching pattern: [UInt8]?) -> [[UInt8]] {
        state.withLock { s in
            s.channels.keys.filter { channel in
                guard let pattern else { return true }
                return pattern.withUnsafeBytes { p in channel.withUnsafeBytes { c in GlobPattern.matches(pattern: p, string: c) } }
            }
        }
    }

    func subscriberCount(_ channel: [UInt8]) -> Int {
        state.withLock { $0.channels[channel]?.count ?? 0 }
    }

    var patternCount: Int {
        state.withLock { $0.patterns.count }
    }
}
