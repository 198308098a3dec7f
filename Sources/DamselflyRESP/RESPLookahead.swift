/// A light look at pipelined commands still waiting in the input, ahead of
/// their parse: where each ends and where its argument 1 (the key of most
/// commands) lies, so the key's lookup can be started early (see
/// `Database.BucketTable.prefetchBucket(hash:)`). It checks only what it needs to walk
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
              base.load(fromByteOffset: start, as: UInt8.self) == UInt8(ascii: "*")
        else { return nil }
        // Offsets stay below `end` and numbers below 10^10 (see `number`):
        // wrapping arithmetic cannot wrap, and skips the overflow checks.
        var position = start &+ 1
        let count = number(base, at: &position, end: end)
        guard count > 0, count <= 1 << 20 else { return nil }
        var key: UnsafeRawBufferPointer? = nil
        var argument = 0
        while argument < count {
            guard position < end, base.load(fromByteOffset: position, as: UInt8.self) == UInt8(ascii: "$") else { return nil }
            position &+= 1
            let length = number(base, at: &position, end: end)
            guard length >= 0, length <= end &- position &- 2 else { return nil }
            if argument == 1 { key = UnsafeRawBufferPointer(start: base + position, count: length) }
            position &+= length &+ 2
            argument &+= 1
        }
        return (position, key)
    }

    /// The decimal number at `position` up to "\r\n", `position` moved past
    /// it; -1 when the line is incomplete, empty, longer than 10 digits or
    /// not digits.
    @inlinable @inline(__always)
    static func number(_ base: UnsafeRawPointer, at position: inout Int, end: Int) -> Int {
        let from = position
        let last = min(end &- 1, from &+ 11)  // at most 10 digits; the '\r' must come by here, with its '\n' after
        var value = 0
        var i = from
        while i < last {
            let byte = base.load(fromByteOffset: i, as: UInt8.self)
            if byte == 0x0D {
                guard i != from else { return -1 }
                position = i &+ 2
                return value
            }
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { return -1 }
            value = value &* 10 &+ Int(digit)
            i &+= 1
        }
        return -1
    }
}
