import Testing
@testable import DamselflyServer

@Suite struct HumanSizeTests {
    @Test(arguments: [
        ("0", 0), ("1", 1), ("100", 100), ("100b", 100), ("100B", 100),
        ("100k", 100_000), ("100K", 100_000), ("10kb", 10 * 1024), ("10KB", 10 * 1024), ("10kB", 10 * 1024),
        ("1m", 1_000_000), ("512mb", 512 * 1024 * 1024), ("512MB", 512 * 1024 * 1024),
        ("1g", 1_000_000_000), ("1G", 1_000_000_000), ("4gb", 4 * 1024 * 1024 * 1024), ("4Gb", 4 * 1024 * 1024 * 1024),
        ("007", 7),
    ])
    func parses(_ text: String, _ expected: Int) {
        #expect(parseHumanSize(text) == expected)
    }

    @Test(arguments: [
        "", "kb", "-1", "+1", "1.5gb", "1 gb", " 1", "1tb", "1x", "1kbb", "0x10", "99999999999999999999",
        "9999999999gb",
    ])
    func rejects(_ text: String) {
        #expect(parseHumanSize(text) == nil)
    }

    @Test(arguments: [
        (0, "0B"), (1, "1B"), (1023, "1023B"), (1024, "1.00K"), (1536, "1.50K"), (1024 * 1024 - 1, "1024.00K"),
        (1024 * 1024, "1.00M"), (512 * 1024 * 1024, "512.00M"), (1024 * 1024 * 1024, "1.00G"),
        (3 * 1024 * 1024 * 1024 / 2, "1.50G"), (1 << 40, "1.00T"), (1 << 50, "1.00P"), (1 << 60, "1152921504606846976B"),
        (869_960, "849.57K"), (-5, "-5B"),
    ])
    func bytesToHuman(_ n: Int, _ expected: String) {
        #expect(humanBytes(n) == expected)
    }

    @Test func compactRendering() {
        #expect(compactHumanSize(0) == "0")
        #expect(compactHumanSize(512 * 1024 * 1024) == "512mb")
        #expect(compactHumanSize(4 * 1024 * 1024 * 1024) == "4gb")
        #expect(compactHumanSize(10 * 1024) == "10kb")
        #expect(compactHumanSize(1_000_000) == "1000000")
        for n in [0, 1, 1000, 1024, 1536 * 1024, 1 << 40, 123_456_789] {
            #expect(parseHumanSize(compactHumanSize(n)) == n)
        }
    }
}
