import Testing
@testable import DamselflyStorage

@Suite struct RedisNumberTests {
    func int(_ s: String) -> Int64? { withBytes(s) { RedisNumber.parseInt64($0) } }
    func double(_ s: String) -> Double? { withBytes(s) { RedisNumber.parseDouble($0) } }

    @Test func parseInt64Accepts() {
        #expect(int("0") == 0)
        #expect(int("1") == 1)
        #expect(int("-1") == -1)
        #expect(int("1234567890") == 1_234_567_890)
        #expect(int("9223372036854775807") == .max)
        #expect(int("-9223372036854775808") == .min)
    }

    @Test func parseInt64Rejects() {
        for s in ["", "-", " 1", "1 ", "+1", "007", "00", "-0", "-01", "9223372036854775808",
                  "-9223372036854775809", "18446744073709551616", "99999999999999999999", "1a", "0x10",
                  "1.0", "123456789012345678901"] {
            #expect(int(s) == nil, "\(s)")
        }
    }

    @Test func parseDoubleAccepts() {
        #expect(double("1.5") == 1.5)
        #expect(double("inf") == .infinity)
        #expect(double("+inf") == .infinity)
        #expect(double("-inf") == -.infinity)
        #expect(double("1e5") == 100_000)
        #expect(double(".5") == 0.5)
        #expect(double("-3") == -3)
        #expect(double("0") == 0)
        #expect(double("1e308") == 1e308)
    }

    @Test func parseDoubleRejects() {
        for s in ["", " 1", "1 ", "nan", "NaN", "abc", "1e999", "-1e999", "1e-999", "1.5x", "--1"] {
            #expect(double(s) == nil, "\(s)")
        }
        #expect(withBytes("1\u{0}2") { RedisNumber.parseDouble($0) } == nil)
    }

    @Test func decimalFormatting() {
        for v: Int64 in [0, 1, -1, 9, 10, -10, 12345, .max, .min] {
            let text = RedisNumber.withDecimalBytes(of: v) { String(decoding: $0, as: UTF8.self) }
            #expect(text == String(v))
            #expect(RedisNumber.decimalLength(of: v) == String(v).utf8.count)
        }
    }
}
