/// Redis's glob matching (`stringmatchlen`), byte based: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`
/// (reversed ranges allowed), `\` escapes, and a case-insensitive mode (ASCII folding, as
/// `tolower` in the C locale). Used by KEYS, SCAN MATCH, PSUBSCRIBE and friends.
///
/// A port of Redis's implementation including its guards: nesting is limited to 1000 levels, and
/// once the rest of the pattern after a `*` failed to match anywhere, earlier stars give up at once
/// (`skipLongerMatches`), which keeps patterns such as `a*a*a*a*b` from going exponential.
///
/// Like Redis, no pattern matches the empty string (the loop never starts, so `*` against "" is
/// false); KEYS and SCAN treat a lone `*` as "everything" before calling the matcher, which
/// `matchesEverything` supports.
public enum GlobPattern {
    public static func matches(pattern: UnsafeRawBufferPointer, string: UnsafeRawBufferPointer, caseInsensitive: Bool = false) -> Bool {
        var skipLongerMatches = false
        return match(pattern, 0, string, 0, caseInsensitive, &skipLongerMatches, 0)
    }

    /// Whether the pattern is a lone `*`, which KEYS and SCAN treat as matching every key (including
    /// the empty key) without calling the matcher, as Redis does.
    public static func matchesEverything(_ pattern: UnsafeRawBufferPointer) -> Bool {
        pattern.count == 1 && pattern[0] == UInt8(ascii: "*")
    }

    /// Whether a pattern is a plain key (no special characters), so KEYS/SCAN can do one lookup.
    public static func isLiteral(_ pattern: UnsafeRawBufferPointer) -> Bool {
        for c in pattern {
            switch c {
            case UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["), UInt8(ascii: "\\"): return false
            default: continue
            }
        }
        return true
    }

    @inline(__always)
    static func lower(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c | 0x20 : c
    }

    /// `p` and `s` are positions in `pattern` and `string`; reading past the end yields 0, as the
    /// NUL terminator does in the C original.
    static func match(
        _ pattern: UnsafeRawBufferPointer, _ start: Int,
        _ string: UnsafeRawBufferPointer, _ stringStart: Int,
        _ nocase: Bool, _ skipLongerMatches: inout Bool, _ nesting: Int
    ) -> Bool {
        if nesting > 1000 { return false }
        let pEnd = pattern.count
        let sEnd = string.count
        var p = start
        var s = stringStart
        @inline(__always) func pat(_ i: Int) -> UInt8 { i < pEnd ? pattern[i] : 0 }

        while p < pEnd && s < sEnd {
            switch pattern[p] {
            case UInt8(ascii: "*"):
                while p + 1 < pEnd && pattern[p + 1] == UInt8(ascii: "*") {
                    p += 1
                }
                if p + 1 == pEnd { return true }
                while s < sEnd {
                    if match(pattern, p + 1, string, s, nocase, &skipLongerMatches, nesting + 1) {
                        return true
                    }
                    if skipLongerMatches { return false }
                    s += 1
                }
                // Nothing after this star matches at any later position, so no earlier star can
                // succeed by consuming more either.
                skipLongerMatches = true
                return false
            case UInt8(ascii: "?"):
                s += 1
            case UInt8(ascii: "["):
                p += 1
                let negate = pat(p) == UInt8(ascii: "^")
                if negate { p += 1 }
                var matched = false
                let c = string[s]
                while true {
                    if pat(p) == UInt8(ascii: "\\") && pEnd - p >= 2 {
                        p += 1
                        if pattern[p] == c { matched = true }
                    } else if pat(p) == UInt8(ascii: "]") && p < pEnd {
                        break
                    } else if p >= pEnd {
                        // Unterminated class: step back so the increment below lands on the end.
                        p -= 1
                        break
                    } else if pEnd - p >= 3 && pattern[p + 1] == UInt8(ascii: "-") {
                        // Redis compares `char`s, signed on the platforms it
                        // ships for (a byte >= 0x80 sorts below '\0'), and
                        // orders the bounds before lowering them.
                        var low = Int8(bitPattern: pattern[p])
                        var high = Int8(bitPattern: pattern[p + 2])
                        var ch = Int8(bitPattern: c)
                        if low > high { swap(&low, &high) }
                        if nocase {
                            low = Int8(bitPattern: lower(UInt8(bitPattern: low)))
                            high = Int8(bitPattern: lower(UInt8(bitPattern: high)))
                            ch = Int8(bitPattern: lower(UInt8(bitPattern: ch)))
                        }
                        p += 2
                        if ch >= low && ch <= high { matched = true }
                    } else if nocase {
                        if lower(pattern[p]) == lower(c) { matched = true }
                    } else if pattern[p] == c {
                        matched = true
                    }
                    p += 1
                }
                if negate { matched = !matched }
                if !matched { return false }
                s += 1
            default:
                if pattern[p] == UInt8(ascii: "\\") && pEnd - p >= 2 {
                    p += 1
                }
                if nocase {
                    if lower(pattern[p]) != lower(string[s]) { return false }
                } else if pattern[p] != string[s] {
                    return false
                }
                s += 1
            }
            p += 1
            if s == sEnd {
                while p < pEnd && pattern[p] == UInt8(ascii: "*") {
                    p += 1
                }
                break
            }
        }
        return p == pEnd && s == sEnd
    }
}
