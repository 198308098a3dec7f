import DamselflyCommands
import DamselflyRESP
import DamselflyRuntime
import DamselflyStorage
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

    /// SPUBLISH: delivers `message` as an `smessage` to the shard channel's subscribers.
    func publishSharded(channel: [UInt8], message: [UInt8]) -> Int {
        let receivers = state.withLock { $0.shardChannels[channel] ?? [] }
        for connection in receivers {
            connection.loop.post { connection.pushMessage([Array("smessage".utf8), channel, message]) }
        }
        return receivers.count
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
