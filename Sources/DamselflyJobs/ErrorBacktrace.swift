import CZlib

/// `error_backtrace` as Sidekiq 6.4.1 stores it in a failed job's payload when the job's
/// `backtrace` option is `true` or a line count: `Base64.encode64(Zlib::Deflate.deflate(
/// JSON.generate(lines)))` (`JobRetry#compress_backtrace`). Ruby reads it back with
/// `Sidekiq::SortedEntry#error_backtrace` (the Web UI's retry page does the same), so a job
/// that failed in Swift shows its failure there like a Ruby one.
///
/// Swift has no Ruby backtrace; the lines describe the thrown error instead: its class and
/// message, where a ``JobError`` was created (`file:line:in 'function'`, as Ruby prints a
/// frame), and the job class that ran.
public enum ErrorBacktrace {
    /// The lines Sidekiq would keep for `option` (the payload's `backtrace`), or `nil` when
    /// it stores none (`nil` or `false`). `true` keeps every line; anything else is
    /// `backtrace[0...option.to_i]`, Ruby's exclusive range (a negative count drops lines
    /// from the end).
    public static func selectLines(_ lines: [String], option: JSONValue?) -> [String]? {
        switch option {
        case nil, .null?, .bool(false)?: return nil
        case .bool(true)?: return lines
        case let value?:
            var end = rubyToInt(value)
            if end < 0 { end += lines.count }
            return Array(lines.prefix(max(0, min(end, lines.count))))
        }
    }

    /// Ruby's `to_i` for the JSON values a payload may carry (`"3"` → 3, `2.9` → 2, `[]` →
    /// would raise in Ruby; treated as 0 here).
    static func rubyToInt(_ value: JSONValue) -> Int {
        switch value {
        case .int(let n): return Int(n)
        case .double(let d): return d.isFinite ? Int(d.rounded(.towardZero)) : 0
        case .string(let s):
            // Leading optional sign and digits, like String#to_i.
            let trimmed = s.drop { $0 == " " }
            var digits = ""
            for (i, c) in trimmed.enumerated() {
                if c.isASCII && c.isNumber || (i == 0 && (c == "-" || c == "+")) { digits.append(c) } else { break }
            }
            return Int(digits) ?? 0
        default: return 0
        }
    }

    /// The lines describing `error`, thrown by a job of class `className`.
    public static func lines(for error: any Error, className: String) -> [String] {
        var lines = ["\(JobRetry.errorClass(of: error)): \(JobRetry.message(of: error))"]
        if let e = error as? JobError, let file = e.file {
            lines.append("\(file):\(e.line):in `\(e.function)'")
        }
        lines.append("in `\(className)#perform' (damselfly-jobs, Swift)")
        return lines
    }

    /// `Base64.encode64(Zlib::Deflate.deflate(JSON.generate(lines)))`, byte for byte.
    public static func compress(_ lines: [String]) -> String {
        let json = Array(JSONValue.array(lines.map(JSONValue.string)).serialized().utf8)
        var out = [UInt8](repeating: 0, count: dfly_zlib_bound(json.count))
        let n = json.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                dfly_zlib_deflate(src.baseAddress, src.count, dst.baseAddress, dst.count)
            }
        }
        precondition(n >= 0, "deflate into compressBound bytes cannot fail")
        return encode64(out[0..<n])
    }

    /// The lines back from an `error_backtrace` value (what Ruby's `uncompress_backtrace`
    /// does), or `nil` when it is not Base64 of zlib data holding a JSON array of strings.
    public static func decompress(_ value: String) -> [String]? {
        guard let compressed = decode64(value) else { return nil }
        // A backtrace's JSON compresses well; grow the buffer until it fits.
        var capacity = max(1024, compressed.count * 8)
        while capacity <= 64 << 20 {
            var out = [UInt8](repeating: 0, count: capacity)
            let n = compressed.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in
                    dfly_zlib_inflate(src.baseAddress, src.count, dst.baseAddress, dst.count)
                }
            }
            if n >= 0 {
                guard let json = try? JSONValue.parse(String(decoding: out[0..<n], as: UTF8.self)),
                      let items = json.arrayValue else { return nil }
                let lines = items.compactMap(\.stringValue)
                return lines.count == items.count ? lines : nil
            }
            capacity *= 4
        }
        return nil
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Ruby's `Base64.encode64` (`pack("m")`): standard alphabet with padding, a newline
    /// after every 60 characters and at the end.
    static func encode64<C: Collection<UInt8>>(_ bytes: C) -> String {
        let input = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity(input.count * 4 / 3 + input.count / 45 + 4)
        var lineLength = 0
        var i = 0
        while i < input.count {
            let b0 = Int(input[i])
            let b1 = i + 1 < input.count ? Int(input[i + 1]) : 0
            let b2 = i + 2 < input.count ? Int(input[i + 2]) : 0
            out.append(alphabet[b0 >> 2])
            out.append(alphabet[(b0 & 3) << 4 | b1 >> 4])
            out.append(i + 1 < input.count ? alphabet[(b1 & 15) << 2 | b2 >> 6] : UInt8(ascii: "="))
            out.append(i + 2 < input.count ? alphabet[b2 & 63] : UInt8(ascii: "="))
            i += 3
            lineLength += 4
            if lineLength == 60 || i >= input.count {
                out.append(UInt8(ascii: "\n"))
                lineLength = 0
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Ruby's `Base64.decode64`: skips characters outside the alphabet (newlines) and stops
    /// at padding.
    static func decode64(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        for c in text.utf8 {
            if c == UInt8(ascii: "=") { break }
            if let v = alphabet.firstIndex(of: c) { values.append(UInt8(v)) }
        }
        var out: [UInt8] = []
        var i = 0
        while i + 1 < values.count {
            let v0 = values[i], v1 = values[i + 1]
            out.append(v0 << 2 | v1 >> 4)
            if i + 2 < values.count { out.append(v1 << 4 | values[i + 2] >> 2) }
            if i + 3 < values.count { out.append(values[i + 2] << 6 | values[i + 3]) }
            i += 4
        }
        return out.isEmpty ? nil : out
    }
}
