import Foundation
import Testing
@testable import DamselflyPersistence
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Locating the real Redis

/// The installed Redis 7.0 tools; tests that need them are disabled (with this reason)
/// when `redis-server` is not on the machine.
enum RedisTools {
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/local/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static let server = find("redis-server")
    static let checkRDB = find("redis-check-rdb")
    static var available: Bool { server != nil && checkRDB != nil }
    static let skipReason: Comment = "redis-server / redis-check-rdb not installed: Redis interop tests skipped"

    /// Runs a tool to completion, returning its exit status and combined output.
    static func run(_ executable: String, _ arguments: [String], outputFile: String) throws -> (status: Int32, output: String) {
        let pid = try spawn(executable, arguments, outputFile: outputFile)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let output = (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
        // WIFEXITED / WEXITSTATUS by hand: Glibc's macros are not imported.
        return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), output)
    }

    /// `posix_spawn` with an empty signal mask and default handlers: a child of the test
    /// runner would otherwise inherit blocked signals and ignore SIGTERM.
    static func spawn(_ executable: String, _ arguments: [String], outputFile: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw HarnessError("posix_spawn \(executable) failed: \(rc)") }
        return pid
    }
}

/// A scratch directory removed when the test is done with it.
final class TempDirectory {
    let path: String

    init() throws {
        let base = "/tmp/dfrdb-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }
}

// MARK: - A redis-server process on a Unix socket

/// A `redis-server` started for one test, listening only on a Unix socket in its own
/// directory (no port to collide with parallel tests), never saving on its own.
final class RedisServer {
    let pid: pid_t
    let directory: TempDirectory
    let socketPath: String

    init(directory: TempDirectory, dbfilename: String = "dump.rdb", extra: [String] = []) throws {
        self.directory = directory
        socketPath = directory.file("redis.sock")
        pid = try RedisTools.spawn(RedisTools.server!, [
            "--port", "0", "--unixsocket", socketPath, "--dir", directory.path,
            "--dbfilename", dbfilename, "--save", "", "--appendonly", "no",
            "--logfile", directory.file("redis.log"), "--daemonize", "no",
            "--enable-debug-command", "yes",
        ] + extra, outputFile: directory.file("redis.out"))
    }

    /// Connects once the server answers PING (it answers -LOADING while it loads).
    func connect() throws -> RESPConnection {
        for _ in 0..<200 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { break }
            if let c = try? RESPConnection(path: socketPath), let reply = try? c.call("PING"),
               case .simple("PONG") = reply {
                return c
            }
            usleep(50_000)
        }
        throw HarnessError("redis-server did not come up; log:\n\(log.suffix(3000))")
    }

    var log: String { (try? String(contentsOfFile: directory.file("redis.log"), encoding: .utf8)) ?? "" }

    deinit {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

// MARK: - Minimal RESP2 client

enum RESPReply: Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8]?)
    case array([RESPReply]?)

    var bytes: [UInt8]? { if case let .bulk(b) = self { return b }; return nil }
    var text: String? {
        switch self {
        case let .simple(s): return s
        case let .bulk(b?): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }
    var elements: [RESPReply] { if case let .array(a?) = self { return a }; return [] }
}

final class RESPConnection {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var cursor = 0

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else { close(fd); throw HarnessError("connect failed") }
    }

    deinit { close(fd) }

    @discardableResult
    func call(_ args: String...) throws -> RESPReply { try call(args.map { Array($0.utf8) }) }

    @discardableResult
    func call(_ args: [[UInt8]]) throws -> RESPReply {
        var out = Array("*\(args.count)\r\n".utf8)
        for a in args {
            out += Array("$\(a.count)\r\n".utf8)
            out += a
            out += [13, 10]
        }
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw HarnessError("write failed") }
            sent += n
        }
        return try readReply()
    }

    /// Calls and requires a non-error reply.
    @discardableResult
    func must(_ args: [[UInt8]]) throws -> RESPReply {
        let r = try call(args)
        if case let .error(e) = r {
            throw HarnessError("\(String(decoding: args[0], as: UTF8.self)) failed: \(e)")
        }
        return r
    }

    @discardableResult
    func must(_ args: String...) throws -> RESPReply { try must(args.map { Array($0.utf8) }) }

    private func fill() throws {
        if cursor > 0 { buffer.removeFirst(cursor); cursor = 0 }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw HarnessError("connection closed") }
        buffer += chunk[0..<n]
    }

    private func line() throws -> String {
        while true {
            if let i = buffer[cursor...].firstIndex(of: 10), i > cursor, buffer[i - 1] == 13 {
                let s = String(decoding: buffer[cursor..<(i - 1)], as: UTF8.self)
                cursor = i + 1
                return s
            }
            try fill()
        }
    }

    private func readReply() throws -> RESPReply {
        let l = try line()
        let rest = String(l.dropFirst())
        switch l.first {
        case "+": return .simple(rest)
        case "-": return .error(rest)
        case ":": return .integer(Int64(rest)!)
        case "$":
            let n = Int(rest)!
            if n < 0 { return .bulk(nil) }
            while buffer.count - cursor < n + 2 { try fill() }
            let b = Array(buffer[cursor..<(cursor + n)])
            cursor += n + 2
            return .bulk(b)
        case "*":
            let n = Int(rest)!
            if n < 0 { return .array(nil) }
            var items = [RESPReply]()
            for _ in 0..<n { items.append(try readReply()) }
            return .array(items)
        default:
            throw HarnessError("bad reply line \(l)")
        }
    }
}

// MARK: - Moving values in and out of Redis

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The textual score Redis accepts for `score` (ZADD).
func scoreArgument(_ score: Double) -> [UInt8] {
    if score == .infinity { return b("+inf") }
    if score == -.infinity { return b("-inf") }
    return b(score.description)
}

extension RESPConnection {
    /// Creates `entries` with ordinary commands (so Redis picks its own encodings).
    func populate(_ entries: [RDBEntry]) throws {
        for e in entries {
            try must("SELECT", String(e.database))
            switch e.value {
            case let .string(s):
                try must([b("SET"), e.key, s])
            case let .list(items):
                for chunk in stride(from: 0, to: items.count, by: 1000) {
                    try must([b("RPUSH"), e.key] + items[chunk..<min(chunk + 1000, items.count)])
                }
            case let .set(members):
                try must([b("SADD"), e.key] + members)
            case let .hash(pairs):
                try must([b("HSET"), e.key] + pairs.flatMap { [$0.0, $0.1] })
            case let .zset(pairs):
                try must([b("ZADD"), e.key] + pairs.flatMap { [scoreArgument($0.1), $0.0] })
            case let .stream(stream):
                for entry in stream.entries {
                    try must([b("XADD"), e.key, b(entry.id.description)] + entry.fields)
                }
            }
            if let at = e.expireAtMs { try must([b("PEXPIREAT"), e.key, b(String(at))]) }
        }
    }

    /// Reads a key back as an ``RDBValue`` (in Redis's order) and its absolute expiry.
    func fetch(database: Int, key: [UInt8]) throws -> (RDBValue?, Int64?) {
        try must("SELECT", String(database))
        let type = try must([b("TYPE"), key]).text
        let value: RDBValue?
        switch type {
        case "string": value = .string(try must([b("GET"), key]).bytes ?? [])
        case "list": value = .list(try must([b("LRANGE"), key, b("0"), b("-1")]).elements.map { $0.bytes! })
        case "set": value = .set(try must([b("SMEMBERS"), key]).elements.map { $0.bytes! })
        case "hash":
            let flat = try must([b("HGETALL"), key]).elements.map { $0.bytes! }
            value = .hash(stride(from: 0, to: flat.count, by: 2).map { (flat[$0], flat[$0 + 1]) })
        case "zset":
            let flat = try must([b("ZRANGE"), key, b("0"), b("-1"), b("WITHSCORES")]).elements.map { $0.bytes! }
            value = .zset(stride(from: 0, to: flat.count, by: 2).map {
                (flat[$0], Double(String(decoding: flat[$0 + 1], as: UTF8.self))!)
            })
        default: value = nil
        }
        guard case let .integer(at) = try must([b("PEXPIRETIME"), key]) else { return (value, nil) }
        return (value, at >= 0 ? at : nil)
    }
}

// MARK: - Comparing values

/// Order-insensitive form: sets sorted, hashes by field, zsets by (score, member).
func normalized(_ v: RDBValue) -> RDBValue {
    switch v {
    case .string, .list, .stream: return v
    case let .set(m): return .set(m.sorted { $0.lexicographicallyPrecedes($1) })
    case let .hash(p): return .hash(p.sorted { $0.0.lexicographicallyPrecedes($1.0) })
    case let .zset(p):
        return .zset(p.sorted { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0.lexicographicallyPrecedes($1.0) })
    }
}

func describe(_ e: RDBEntry) -> String { "db\(e.database) \(String(decoding: e.key, as: UTF8.self))" }
