/// LZF decompression (liblzf's format, as Redis uses for strings when `rdbcompression yes`).
///
/// A control byte below 32 starts a literal run of `ctrl + 1` bytes; otherwise its top three
/// bits give a back-reference length (7 means "add the next byte") and the low five bits,
/// with the following byte, the distance back into the output.
enum LZF {
    /// Expands `input` into exactly `expectedLength` bytes, or returns `nil` if the stream is
    /// malformed (a reference before the start, a run past either end, a length mismatch).
    static func decompress(_ input: ArraySlice<UInt8>, expectedLength: Int) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(expectedLength)
        var ip = input.startIndex
        let end = input.endIndex
        while ip < end {
            let ctrl = Int(input[ip])
            ip += 1
            if ctrl < 32 {
                let run = ctrl + 1
                guard ip + run <= end, out.count + run <= expectedLength else { return nil }
                out.append(contentsOf: input[ip..<(ip + run)])
                ip += run
            } else {
                var length = ctrl >> 5
                if length == 7 {
                    guard ip < end else { return nil }
                    length += Int(input[ip])
                    ip += 1
                }
                guard ip < end else { return nil }
                let distance = ((ctrl & 0x1f) << 8) + Int(input[ip]) + 1
                ip += 1
                length += 2
                guard distance <= out.count, out.count + length <= expectedLength else { return nil }
                var ref = out.count - distance
                for _ in 0..<length {
                    out.append(out[ref])
                    ref += 1
                }
            }
        }
        return out.count == expectedLength ? out : nil
    }
}
