import Testing
@testable import DamselflyJobs

/// `error_backtrace` must be what Sidekiq 6.4.1's `compress_backtrace` writes; the expected
/// strings below were printed by Ruby: `Base64.encode64(Zlib::Deflate.deflate(JSON.generate(lines)))`.
@Suite struct ErrorBacktraceTests {
    let lines = ["RuntimeError: boom", "x.swift:3:in `perform(_:context:)'", "in `HardJob#perform' (damselfly-jobs, Swift)"]

    @Test func compressesAsRubyDoes() {
        #expect(ErrorBacktrace.compress(lines) == "eJyLVgoqzSvJzE11LSrKL7JSSMrPz1XSUarQKy7PTCuxMrbKzFNIKEgtSssv\nytWIt0rOzytJrSix0lQHKgJJeSQWpXjlJylDlagraKQk5han5qTlVOpm5ScV\n6ygEgwzSVIoFALGZJIo=\n")
        #expect(ErrorBacktrace.decompress(ErrorBacktrace.compress(lines)) == lines)
    }

    @Test func base64LikeEncode64() {
        #expect(ErrorBacktrace.encode64(Array("ab".utf8)) == "YWI=\n")
        let long = String(repeating: "abc", count: 30)
        #expect(ErrorBacktrace.encode64(Array(long.utf8)) == String(repeating: "YWJj", count: 15) + "\n" + String(repeating: "YWJj", count: 15) + "\n")
        #expect(ErrorBacktrace.decode64("YWJj\nYWI=\n") == Array("abcab".utf8))
        #expect(ErrorBacktrace.decompress("not base64 zlib") == nil)
    }

    @Test func optionSelectsLinesLikeRuby() {
        #expect(ErrorBacktrace.selectLines(lines, option: nil) == nil)
        #expect(ErrorBacktrace.selectLines(lines, option: .bool(false)) == nil)
        #expect(ErrorBacktrace.selectLines(lines, option: .bool(true)) == lines)
        #expect(ErrorBacktrace.selectLines(lines, option: .int(2)) == Array(lines.prefix(2)))
        #expect(ErrorBacktrace.selectLines(lines, option: .int(10)) == lines)
        #expect(ErrorBacktrace.selectLines(lines, option: .int(0)) == [])
        #expect(ErrorBacktrace.selectLines(lines, option: .int(-1)) == Array(lines.prefix(2)))  // [0...-1]
        #expect(ErrorBacktrace.selectLines(lines, option: .string("1")) == [lines[0]])
    }

    @Test func linesNameTheErrorWhereItWasMadeAndTheJob() {
        let error = JobError("boom", errorClass: "ArgumentError")
        let got = ErrorBacktrace.lines(for: error, className: "HardJob")
        #expect(got.count == 3)
        #expect(got[0] == "ArgumentError: boom")
        #expect(got[1].hasPrefix("DamselflyJobsTests/ErrorBacktraceTests.swift:"))
        #expect(got[2] == "in `HardJob#perform' (damselfly-jobs, Swift)")
    }

    @Test func retryDecisionCarriesTheBacktraceOnlyWhenAsked() {
        let retry = JobRetry()
        var payload = JobPayload.make(className: "HardJob", args: [])
        guard case .retry(_, let plain) = retry.decide(payload: payload, queue: "q", error: JobError("boom")) else {
            Issue.record("retry"); return
        }
        #expect(plain["error_backtrace"] == nil)
        payload["backtrace"] = .int(1)
        guard case .retry(_, let msg) = retry.decide(payload: payload, queue: "q", error: JobError("boom")),
              let stored = msg["error_backtrace"]?.stringValue else {
            Issue.record("no error_backtrace"); return
        }
        #expect(ErrorBacktrace.decompress(stored) == ["RuntimeError: boom"])
        guard case .object(let pairs) = msg else { return }
        #expect(pairs.last?.0 == "error_backtrace")
    }
}
