import Glibc

/// The job hash as Sidekiq 6/7 writes it, and the clock and ids it uses.
public enum JobPayload {
    /// Seconds since the epoch as a float: Ruby's `Time.now.to_f`.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// 24 hex digits from 12 random bytes: `SecureRandom.hex(12)`.
    public static func newJID() -> String {
        var g = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 24)
        for i in 0..<12 {
            let byte = UInt8.random(in: 0...255, using: &g)
            out[2 * i] = digits[Int(byte >> 4)]
            out[2 * i + 1] = digits[Int(byte & 15)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `Sidekiq::Client#normalize_item`: defaults merged under the caller's options, then
    /// class, queue, args, jid and created_at, in the order Sidekiq's hash has them.
    public static func make(
        className: String, args: [JSONValue], options: JobOptions = JobOptions(),
        jid: String = newJID(), createdAt: Double = now()
    ) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("retry", options.retry.json),
            ("queue", .string(options.queue)),
        ]
        if let backtrace = options.backtrace { pairs.append(("backtrace", backtrace)) }
        if !options.dead { pairs.append(("dead", .bool(false))) }
        pairs += [
            ("class", .string(className)),
            ("args", .array(args)),
            ("jid", .string(jid)),
            ("created_at", .double(createdAt)),
        ]
        return .object(pairs)
    }

    /// A jid is 24 lowercase hex digits.
    public static func isValidJID(_ jid: String) -> Bool {
        jid.utf8.count == 24 && jid.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Today's date in UTC as the daily stat keys spell it (`stat:processed:2024-05-01`).
    public static func utcDate(_ time: Double = now()) -> String {
        var t = time_t(time)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))"
    }
}
