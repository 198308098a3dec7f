/// A light look at pipelined commands still waiting in the input, ahead of
/// their parse: where each ends and where its argument 1 (the key of most
/// commands) lies, so the key's lookup can be started early (see
/// `Database.prefetchBucket(hash:)`). It checks only what it needs to walk
/// the frames; the parse that follows is the one that judges them.
public enum RESPLookahead {
    /// The command at `start` in `buffer`, a complete multibulk frame: the
    /// offset just past it and its argument 1's bytes (nil when it has fewer
    /// than two arguments). Nil when the bytes at `start` are anything else:
    /// incomplete, an inline command, malformed.
    @inlinable
    public static func command(in buffer: UnsafeRawBufferPointer, at start: Int)
        -> (end: Int, key: UnsafeRawBufferPointer?)?
    {
        let end = buffer.count
        guard start < end, let base = buffer.baseAddress,
              base.load(fromByteOffset: start, as: UInt8.self) == UInt8(ascii: "*"),
              let (count, afterCount) = number(base, from: start + 1, end: end),
              count > 0, count <= 1 << 20
        else { return nil }
        var position = afterCount
        var key: UnsafeRawBufferPointer? = nil
        for argument in 0..<count {
            guard position < end, base.load(fromByteOffset: position, as: UInt8.self) == UInt8(ascii: "$"),
                  let (length, bytesStart) = number(base, from: position + 1, end: end),
                  length >= 0, length <= end - bytesStart - 2
            else { return nil }
            if argument == 1 { key = UnsafeRawBufferPointer(start: base + bytesStart, count: length) }
            position = bytesStart + length + 2
        }
        return (position, key)
    }

    /// The decimal number at `from` up to "\r\n", and the offset after that;
    /// nil when the line is incomplete, empty, longer than 10 digits or not digits.
    @inlinable
    static func number(_ base: UnsafeRawPointer, from: Int, end: Int) -> (Int, Int)? {
        var value = 0
        var i = from
        while i < end {
            let byte = base.load(fromByteOffset: i, as: UInt8.self)
            if byte == 0x0D {
                guard i > from, i + 1 < end else { return nil }
                return (value, i + 2)
            }
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10, i - from < 10 else { return nil }
            value = value &* 10 &+ Int(digit)
            i += 1
        }
        return nil
    }
}
