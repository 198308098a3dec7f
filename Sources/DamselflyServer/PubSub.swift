import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
import DamselflyTransactions
import Synchronization

/// What a subscription names: a channel (SUBSCRIBE), a glob pattern (PSUBSCRIBE) or a
/// shard channel (SSUBSCRIBE, Redis 7's sharded pub/sub).
enum SubscriptionKind: Sendable {
    case channel, pattern, shardChannel
}

/// The server's channel, pattern and shard-channel subscriptions.
///
/// PUBLISH is not on the key-value path, so one mutex-guarded registry is
/// enough: PUBLISH takes a snapshot of the receivers under the lock and posts
/// the message to each receiver's loop, where its connection writes it.
///
/// Shard channels are Redis Cluster's slot-scoped channels; a single Damselfly
/// node owns every slot, so they form one namespace of their own, apart from the
/// classic channels (SPUBLISH never reaches a SUBSCRIBE and no pattern matches them).
final class PubSubRegistry: Sendable {
    private struct State {
        var channels: [[UInt8]: [Connection]] = [:]
        var patterns: [[UInt8]: [Connection]] = [:]
        var shardChannels: [[UInt8]: [Connection]] = [:]

        subscript(kind: SubscriptionKind) -> [[UInt8]: [Connection]] {
            get {
                switch kind {
                case .channel: return channels
                case .pattern: return patterns
                case .shardChannel: return shardChannels
                }
            }
            set {
                switch kind {
                case .channel: channels = newValue
                case .pattern: patterns = newValue
                case .shardChannel: shardChannels = newValue
                }
            }
        }
    }

    private let state = Mutex(State())

    func subscribe(_ connection: Connection, _ name: [UInt8], kind: SubscriptionKind) {
        state.withLock { $0[kind][name, default: []].append(connection) }
    }

    func unsubscribe(_ connection: Connection, _ name: [UInt8], kind: SubscriptionKind) {
        state.withLock { s in
            guard var list = s[kind][name] else { return }
            list.removeAll { $0 === connection }
            s[kind][name] = list.isEmpty ? nil : list
        }
    }

    /// Delivers `message` to every subscriber of `channel` and every matching
    /// pattern subscriber; returns how many receive it. With `loop` and `done`
    /// (PUBLISH), `done` gets that count on `loop` once every receiver's
    /// connection has the message in its output, as Redis writes into the
    /// subscribers' buffers before PUBLISH returns: a subscriber's replies to
    /// what it sends after the publisher got its answer come after the
    /// message. Without them (keyspace notifications, a script) the messages
    /// are on their way when it returns, not yet written.
    @discardableResult
    func publish(channel: [UInt8], message: [UInt8], from loop: EventLoop? = nil, done: ((Int) -> Void)? = nil) -> Int {
        deliver(receivers(channel: channel, message: message), from: loop, done: done)
    }

    /// SPUBLISH: ``publish(channel:message:from:done:)`` for the shard
    /// channel's subscribers, as `smessage`s.
    @discardableResult
    func publishSharded(channel: [UInt8], message: [UInt8], from loop: EventLoop? = nil, done: ((Int) -> Void)? = nil) -> Int {
        let receivers = state.withLock { $0.shardChannels[channel] ?? [] }
        return deliver(receivers.map { ($0, [Array("smessage".utf8), channel, message]) }, from: loop, done: done)
    }

    /// The message each receiver gets: subscribers of the channel, then those of matching patterns.
    private func receivers(channel: [UInt8], message: [UInt8]) -> [(Connection, [[UInt8]])] {
        state.withLock { s in
            var pushes: [(Connection, [[UInt8]])] = []
            for connection in s.channels[channel] ?? [] {
                pushes.append((connection, [Array("message".utf8), channel, message]))
            }
            for (pattern, list) in s.patterns {
                let matches = pattern.withUnsafeBytes { p in
                    channel.withUnsafeBytes { c in GlobPattern.matches(pattern: p, string: c) }
                }
                if matches {
                    for connection in list { pushes.append((connection, [Array("pmessage".utf8), pattern, channel, message])) }
                }
            }
            return pushes
        }
    }

    /// Writes each push on its connection's loop: at once for connections of
    /// `loop` (the publisher's), posted to the others; with `done`, each of
    /// those loops answers back and `done` runs on `loop` when all have.
    private func deliver(_ pushes: [(Connection, [[UInt8]])], from loop: EventLoop?, done: ((Int) -> Void)?) -> Int {
        guard let loop, let done else {
            for (connection, parts) in pushes { connection.loop.post { connection.pushMessage(parts) } }
            return pushes.count
        }
        // The publisher's own loop first: with no other loop to wait for, the
        // gather answers as it is made, after these are written.
        for (connection, parts) in pushes where connection.loop === loop { connection.pushMessage(parts) }
        let remote = pushes.filter { $0.0.loop !== loop }
        let gather = Gather<Void>(count: remote.count) { _ in done(pushes.count) }
        for (i, (connection, parts)) in remote.enumerated() {
            connection.loop.post {
                connection.pushMessage(parts)
                loop.post { gather.deliver(i, ()) }
            }
        }
        return pushes.count
    }

    /// Active channels (or shard channels) with at least one subscriber, matching `pattern`.
    func channels(matching pattern: [UInt8]?, kind: SubscriptionKind = .channel) -> [[UInt8]] {
        state.withLock { s in
            s[kind].keys.filter { channel in
                guard let pattern else { return true }
                return pattern.withUnsafeBytes { p in channel.withUnsafeBytes { c in GlobPattern.matches(pattern: p, string: c) } }
            }
        }
    }

    func subscriberCount(_ channel: [UInt8], kind: SubscriptionKind = .channel) -> Int {
        state.withLock { $0[kind][channel]?.count ?? 0 }
    }

    var patternCount: Int {
        state.withLock { $0.patterns.count }
    }

    /// Channels, patterns and shard channels with at least one subscriber (INFO's
    /// `pubsub_channels`, `pubsub_patterns`, `pubsubshard_channels`).
    var counts: (channels: Int, patterns: Int, shardChannels: Int) {
        state.withLock { ($0.channels.count, $0.patterns.count, $0.shardChannels.count) }
    }
}
