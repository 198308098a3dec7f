import Synchronization

/// A user as connections hold it: the name never changes; the rules do (ACL SETUSER
/// applies to connections already authenticated, as in Redis), so they sit behind a
/// lock, and a flag read without it says whether there is anything to check at all.
public final class ACLUserHandle: Sendable {
    public let name: String
    private let state: Mutex<ACLUser>
    /// The root selector allows everything: the connection skips the check (one
    /// relaxed load per command; the default user's case).
    public let unrestricted: Atomic<Bool>
    /// Deleted by ACL DELUSER or ACL LOAD: its connections are being closed.
    public let removed = Atomic<Bool>(false)

    init(_ user: ACLUser) {
        name = user.name
        state = Mutex(user)
        unrestricted = Atomic(user.isUnrestricted)
    }

    /// A copy of the current rules.
    public var user: ACLUser { state.withLock { $0 } }

    func replace(_ user: ACLUser) {
        state.withLock { $0 = user }
        unrestricted.store(user.isUnrestricted, ordering: .releasing)
    }
}

/// One ACL LOG entry, Redis 7.0's fields.
public struct ACLLogEntry: Sendable {
    public enum Reason: String, Sendable { case command, key, channel, auth }
    public enum Context: String, Sendable { case toplevel, multi, lua }
    public var count: Int
    public let reason: Reason
    public let context: Context
    public let object: String
    public let username: String
    public var createdMs: Int64
    public var clientInfo: String
}

/// Every ACL user, the `default` one always there, and the ACL log. Shared by all
/// threads; written by ACL commands, read on AUTH and when a restricted user's command
/// is checked.
public final class ACLRegistry: Sendable {
    private let users: Mutex<[String: ACLUserHandle]>
    public let defaultUser: ACLUserHandle
    private let log = Mutex<[ACLLogEntry]>([])
    /// `acllog-max-len`.
    public let logMaxLength = Atomic<Int>(128)

    public init() {
        let handle = ACLUserHandle(ACLUser.makeDefault())
        defaultUser = handle
        users = Mutex(["default": handle])
    }

    public func handle(_ name: String) -> ACLUserHandle? { users.withLock { $0[name] } }

    /// Names in byte order (Redis keeps users in a radix tree).
    public var names: [String] {
        users.withLock { Array($0.keys) }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    public var allUsers: [ACLUser] { names.compactMap { handle($0)?.user } }

    /// ACL SETUSER: applies every rule to a copy of the user (a new one starts off,
    /// without permissions) and installs it only if all were valid; the error text
    /// otherwise, as Redis words it. Returns the previous rules when the user existed.
    public func setUser(_ name: String, rules: [[UInt8]]) -> Result<ACLUser?, ACLSetUserError> {
        let (merged, unmatched) = ACLUser.mergeSelectorArguments(rules)
        if let unmatched {
            return .failure(ACLSetUserError("ERR Unmatched parenthesis in acl selector starting at '\(String(decoding: rules[unmatched], as: UTF8.self))'."))
        }
        return users.withLock { (users: inout [String: ACLUserHandle]) -> Result<ACLUser?, ACLSetUserError> in
            let old = users[name]?.user
            var user = old ?? ACLUser(name: name)
            for op in merged {
                do throws(ACLRuleError) {
                    try user.apply(op)
                } catch {
                    return .failure(ACLSetUserError("ERR Error in ACL SETUSER modifier '\(String(decoding: op, as: UTF8.self))': \(error.message)"))
                }
            }
            if let handle = users[name] { handle.replace(user) } else { users[name] = ACLUserHandle(user) }
            return .success(old)
        }
    }

    /// ACL DELUSER: the handles removed (their connections are to be closed).
    public func deleteUsers(_ names: [String]) -> [ACLUserHandle] {
        users.withLock { (users: inout [String: ACLUserHandle]) -> [ACLUserHandle] in
            var out: [ACLUserHandle] = []
            for name in names where name != "default" {
                if let h = users.removeValue(forKey: name) {
                    h.removed.store(true, ordering: .releasing)
                    out.append(h)
                }
            }
            return out
        }
    }

    /// Replaces every user at once (ACL LOAD, --aclfile at start-up); `loaded` names
    /// `default`. As in Redis, every other user is a new object afterwards: the old
    /// handles are returned, marked removed, and their connections are to be closed.
    public func replaceAll(_ loaded: [ACLUser]) -> [ACLUserHandle] {
        users.withLock { (users: inout [String: ACLUserHandle]) -> [ACLUserHandle] in
            let old = users.values.filter { $0 !== defaultUser }
            for h in old { h.removed.store(true, ordering: .releasing) }
            var next: [String: ACLUserHandle] = ["default": defaultUser]
            for user in loaded {
                if user.name == "default" { defaultUser.replace(user) } else { next[user.name] = ACLUserHandle(user) }
            }
            users = next
            return old
        }
    }

    /// `requirepass`: the default user's only password, or nopass when empty.
    public func setDefaultPassword(_ password: String) {
        users.withLock { _ in
            var user = defaultUser.user
            try! user.apply(Array("resetpass".utf8))
            try! user.apply(password.isEmpty ? Array("nopass".utf8) : [UInt8(ascii: ">")] + Array(password.utf8))
            defaultUser.replace(user)
        }
    }

    /// AUTH / HELLO AUTH: the user when the pair is right and the user is on.
    public func authenticate(_ name: String, _ password: [UInt8]) -> ACLUserHandle? {
        guard let h = handle(name), h.user.accepts(password) else { return nil }
        return h
    }

    // MARK: - ACL LOG

    /// Adds an entry, or bumps a like one (same reason, context, object and user, within
    /// a minute) among the ten newest, as Redis groups them.
    public func record(_ reason: ACLLogEntry.Reason, context: ACLLogEntry.Context, object: String, username: String,
                       clientInfo: String, nowMs: Int64) {
        log.withLock { log in
            for i in log.indices.prefix(10) {
                let e = log[i]
                if e.reason == reason && e.context == context && abs(e.createdMs - nowMs) <= 60_000
                    && e.object == object && e.username == username {
                    var bumped = log.remove(at: i)
                    bumped.count += 1
                    bumped.createdMs = nowMs
                    bumped.clientInfo = clientInfo
                    log.insert(bumped, at: 0)
                    return
                }
            }
            log.insert(ACLLogEntry(count: 1, reason: reason, context: context, object: object, username: username,
                                   createdMs: nowMs, clientInfo: clientInfo), at: 0)
            let limit = max(0, logMaxLength.load(ordering: .relaxed))
            if log.count > limit { log.removeLast(log.count - limit) }
        }
    }

    public func logEntries(_ count: Int) -> [ACLLogEntry] { log.withLock { Array($0.prefix(max(0, count))) } }
    public func resetLog() { log.withLock { $0 = [] } }
}

public struct ACLSetUserError: Error, Sendable {
    public let message: String
    init(_ message: String) { self.message = message }
}
