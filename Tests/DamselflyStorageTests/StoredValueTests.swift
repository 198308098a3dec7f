import Testing
@testable import DamselflyStorage

@Suite struct StoredValueTests {
    func value(_ s: String) -> StoredValue { withBytes(s) { StoredValue.string($0) } }

    @Test func encodings() {
        #expect(value("123").encodingName == "int")
        #expect(value("-9223372036854775808").encodingName == "int")
        #expect(value("007").encodingName == "embstr")
        #expect(value("-0").encodingName == "embstr")
        #expect(value("+1").encodingName == "embstr")
        #expect(value("9223372036854775808").encodingName == "embstr")
        #expect(value("hello").encodingName == "embstr")
        #expect(value("").encodingName == "embstr")
        #expect(value(String(repeating: "x", count: 44)).encodingName == "embstr")
        #expect(value(String(repeating: "x", count: 45)).encodingName == "raw")
        #expect(value("1").typeName == "string")
        #expect(value("x").typeName == "string")
    }

    @Test func stringBytesRoundTrip() {
        for s in ["0", "-5", "9223372036854775807", "hello", "", "0012"] {
            let v = value(s)
            #expect(v.withStringBytes { String(decoding: $0, as: UTF8.self) } == s)
            #expect(v.stringLength == s.utf8.count)
        }
    }

    @Test func memoryUsage() {
        #expect(value("42").memoryUsage == 0)
        #expect(value("").memoryUsage == 0)
        #expect(value("hello").memoryUsage >= 32 + 5)
    }
}
