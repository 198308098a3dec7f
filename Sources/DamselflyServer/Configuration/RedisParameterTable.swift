/// Redis 7.0's whole parameter table, for the parameters Damselfly has no setting of its own
/// for (``ConfigParameters/table`` holds those). The entries themselves are generated from a
/// real redis-server by scripts/redis-config-table.py (`RedisParameterTable+Generated.swift`).
///
/// CONFIG GET reports every one with its value; CONFIG SET validates the value as Redis
/// would (same kinds, ranges and error texts) and stores it in ``ServerConfig/redisParameters``,
/// so clients and tests that set them proceed. Nothing else reads them: docs/configuration.md
/// says which have no effect. The few whose silent acceptance would mislead a client
/// (``refusedNonDefault``) are refused unless set to their default.
enum RedisParameterTable {
    enum Kind: Sendable, Equatable {
        case immutable
        case protected
        case bool
        case oneOf([String])
        case integer(Int, Int)
        case memory(Int, Int)
        case string
        /// A value with its own syntax, checked by ``checkSpecial(_:_:)``.
        case special
    }

    struct Entry: Sendable {
        let name: String
        let defaultValue: String
        let kind: Kind
        /// The parameter this name is another name for (`hash-max-ziplist-entries` →
        /// `hash-max-listpack-entries`); both names are listed, one value is stored.
        let aliasOf: String?
        /// Redis's hidden parameters (debugging knobs such as `key-load-delay`): CONFIG GET
        /// returns them only when asked for by exact name, never for a pattern.
        let hidden: Bool

        init(_ name: String, _ defaultValue: String, _ kind: Kind, aliasOf: String? = nil, hidden: Bool = false) {
            self.name = name
            self.defaultValue = defaultValue
            self.kind = kind
            self.aliasOf = aliasOf
            self.hidden = hidden
        }

        func matches(_ pattern: String) -> Bool {
            hidden ? pattern.lowercased() == name : configGlobMatch(pattern, name)
        }

        /// Where the value is stored.
        var canonicalName: String { aliasOf ?? name }
    }

    /// Settings whose acceptance would be a lie a client acts on (none today: keyspace
    /// notifications, once the one entry, are implemented).
    static let refusedNonDefault: [String: String] = [:]

    static let byName: [String: Entry] = {
        var table: [String: Entry] = [:]
        for entry in generated { table[entry.name] = entry }
        return table
    }()

    static func value(_ entry: Entry, in config: ServerConfig) -> String {
        config.redisParameters[entry.canonicalName] ?? byName[entry.canonicalName]?.defaultValue ?? entry.defaultValue
    }

    /// Checks `text` for `entry`; returns the value CONFIG GET will show afterwards, or the
    /// reason Redis gives after "CONFIG SET failed (possibly related to argument '…') - ".
    static func normalize(_ text: String, for entry: Entry, current: String) -> Result<String, ConfigParameters.Reason> {
        switch entry.kind {
        case .immutable: return .failure(.init("can't set immutable config"))
        case .protected: return .failure(.init("can't set protected config"))
        case .bool:
            switch text.lowercased() {
            case "yes", "no": return .success(text.lowercased())
            default: return .failure(.init("argument must be 'yes' or 'no'"))
            }
        case .oneOf(let choices):
            let lowered = text.lowercased()
            guard choices.contains(lowered) else {
                return .failure(.init("argument(s) must be one of the following: " + choices.joined(separator: ", ")))
            }
            return .success(lowered)
        case .integer(let lo, let hi):
            return ConfigParameters.integer(text, lo...hi).map { String($0) }
        case .memory(let lo, let hi):
            return ConfigParameters.memory(text, lo...hi).map { String($0) }
        case .string:
            return .success(text)
        case .special:
            if let reason = refusedNonDefault[entry.canonicalName], text != entry.defaultValue {
                return .failure(.init(reason))
            }
            return checkSpecial(entry.canonicalName, text, current: current)
        }
    }

    /// The parameters with a syntax of their own: checked as Redis checks them, stored as
    /// Redis shows them afterwards.
    static func checkSpecial(_ name: String, _ text: String, current: String) -> Result<String, ConfigParameters.Reason> {
        let words = text.split(separator: " ").map(String.init)
        switch name {
        case "oom-score-adj-values":
            guard words.count == 3 else { return .failure(.init("wrong number of arguments")) }
            guard words.allSatisfy({ Int($0).map { (-2000...2000).contains($0) } ?? false }) else {
                return .failure(.init("Invalid oom-score-adj-values"))
            }
            return .success(words.joined(separator: " "))
        case "latency-tracking-info-percentiles":
            guard words.allSatisfy({ Double($0).map { (0...100).contains($0) } ?? false }) else {
                return .failure(.init("Invalid latency-tracking-info-percentiles parameters"))
            }
            return .success(words.joined(separator: " "))
        case "maxmemory-clients":
            if text.hasSuffix("%"), let n = Int(text.dropLast()), n >= 0 {
                return n <= 100 ? .success(text) : .failure(.init("percentage argument must be less or equal to 100"))
            }
            guard let n = parseHumanSize(text) else { return .failure(.init("argument must be a memory or percent value")) }
            return .success(String(n))
        case "client-output-buffer-limit":
            return clientOutputBufferLimit(words, current: current)
        case "cluster-announce-hostname":
            let allowed = text.utf8.allSatisfy { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || (0x30...0x39).contains($0)
                || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
            return allowed ? .success(text) : .failure(.init("Hostnames may only contain alphanumeric characters, hyphens or dots"))
        default:
            return .success(text)
        }
    }

    /// `class hard soft seconds` groups (class normal, replica/slave or pubsub) changing the
    /// `current` limits; the stored value always lists all three classes, as Redis shows it.
    static func clientOutputBufferLimit(_ words: [String], current: String) -> Result<String, ConfigParameters.Reason> {
        guard !words.isEmpty, words.count % 4 == 0 else {
            return .failure(.init("Wrong number of arguments in buffer limit configuration."))
        }
        var limits: [String: [Int]] = [:]
        let old = current.split(separator: " ").map(String.init)
        for start in stride(from: 0, to: old.count - 3, by: 4) {
            limits[old[start]] = old[(start + 1)...(start + 3)].map { Int($0) ?? 0 }
        }
        for start in stride(from: 0, to: words.count, by: 4) {
            var cls = words[start].lowercased()
            if cls == "replica" { cls = "slave" }
            guard limits[cls] != nil else { return .failure(.init("Invalid client class specified in buffer limit configuration.")) }
            guard let hard = parseHumanSize(words[start + 1]), let soft = parseHumanSize(words[start + 2]),
                  let seconds = Int(words[start + 3]), seconds >= 0 else {
                return .failure(.init("Error in hard, soft or soft_seconds setting in buffer limit configuration."))
            }
            limits[cls] = [hard, soft, seconds]
        }
        let text = ["normal", "slave", "pubsub"].map { cls in ([cls] + limits[cls]!.map(String.init)).joined(separator: " ") }
        return .success(text.joined(separator: " "))
    }
}
