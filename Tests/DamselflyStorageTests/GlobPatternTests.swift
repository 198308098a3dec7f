import Testing
@testable import DamselflyStorage

@Suite struct GlobPatternTests {
    func m(_ pattern: String, _ string: String, nocase: Bool = false) -> Bool {
        withBytes(pattern) { p in
            withBytes(string) { s in GlobPattern.matches(pattern: p, string: s, caseInsensitive: nocase) }
        }
    }

    @Test func starAndQuestion() {
        #expect(m("*", "anything"))
        // As in Redis, a pattern never matches the empty string (KEYS/SCAN special-case a lone "*").
        #expect(!m("*", ""))
        #expect(withBytes("*") { GlobPattern.matchesEverything($0) })
        #expect(!withBytes("a*") { GlobPattern.matchesEverything($0) })
        #expect(m("h?llo", "hello"))
        #expect(m("h?llo", "hallo"))
        #expect(m("h?llo", "hxllo"))
        #expect(!m("h?llo", "hllo"))
        #expect(m("h*llo", "hllo"))
        #expect(m("h*llo", "heeeello"))
        #expect(!m("h*llo", "heeeelo"))
        #expect(m("foo*", "foobar"))
        #expect(!m("foo*", "fo"))
        #expect(m("*bar", "foobar"))
        #expect(m("a**b", "axxb"))
        #expect(m("", ""))
        #expect(!m("", "a"))
        #expect(!m("a", ""))
        #expect(m("a*", "a"))
    }

    @Test func classes() {
        #expect(m("h[ae]llo", "hello"))
        #expect(m("h[ae]llo", "hallo"))
        #expect(!m("h[ae]llo", "hillo"))
        #expect(m("h[^e]llo", "hallo"))
        #expect(m("h[^e]llo", "hbllo"))
        #expect(!m("h[^e]llo", "hello"))
        #expect(m("h[a-b]llo", "hallo"))
        #expect(m("h[a-b]llo", "hbllo"))
        #expect(!m("h[a-b]llo", "hcllo"))
        #expect(m("h[b-a]llo", "hallo"))  // reversed ranges are accepted
        #expect(m("[\\]]", "]"))
        #expect(m("[a\\-z]", "-"))
        #expect(!m("[a\\-z]", "b"))
        // An unterminated class matches what it lists so far.
        #expect(m("[abc", "a"))
        #expect(!m("[abc", "d"))
    }

    @Test func escapes() {
        #expect(m("\\*", "*"))
        #expect(!m("\\*", "a"))
        #expect(m("h\\?llo", "h?llo"))
        #expect(!m("h\\?llo", "hello"))
        #expect(m("\\[a]", "[a]"))
        #expect(m("a\\", "a\\"))
    }

    @Test func caseInsensitive() {
        #expect(m("HELLO", "hello", nocase: true))
        #expect(!m("HELLO", "hello"))
        #expect(m("h[A-Z]llo", "hello", nocase: true))
        #expect(m("H[E]LLO", "hello", nocase: true))
        #expect(m("h*O", "hellO", nocase: false))
        #expect(m("h*O", "hello", nocase: true))
    }

    @Test func pathologicalPatternsFinish() {
        // From Redis's util test: many stars against a long non-matching string must not blow up.
        let pattern = String(repeating: "a*", count: 50) + "b"
        let string = String(repeating: "a", count: 100)
        #expect(!m(pattern, string))
        #expect(!m(String(repeating: "*", count: 100_000) + "x", "y"))
    }

    @Test func literalDetection() {
        #expect(withBytes("user:1") { GlobPattern.isLiteral($0) })
        #expect(!withBytes("user:*") { GlobPattern.isLiteral($0) })
    }
}
