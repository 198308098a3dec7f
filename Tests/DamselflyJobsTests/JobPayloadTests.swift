import DamselflyRESP
import Testing
@testable import DamselflyJobs

@Suite struct JobPayloadTests {
    @Test func payloadHasSidekiqFieldsInOrder() throws {
        let payload = JobPayload.make(className: "HardJob", args: [.int(1), .string("a")], createdAt: 1700000000.25)
        guard case .object(let pairs) = payload else { Issue.record("not an object"); return }
        #expect(pairs.map(\.0) == ["retry", "queue", "class", "args", "jid", "created_at"])
        #expect(payload["retry"] == .bool(true))
        #expect(payload["queue"] == .string("default"))
        #expect(payload["class"] == .string("HardJob"))
        #expect(payload["args"] == .array([.int(1), .string("a")]))
        #expect(JobPayload.isValidJID(payload["jid"]?.stringValue ?? ""))
        #expect(payload.serialized().hasSuffix(#""created_at":1700000000.25}"#))
    }

    @Test func optionsLandInPayload() {
        let options = JobOptions(queue: "critical", retry: .attempts(3), backtrace: .bool(true), dead: false)
        let payload = JobPayload.make(className: "X", args: [], options: options)
        #expect(payload["queue"] == .string("critical"))
        #expect(payload["retry"] == .int(3))
        #expect(payload["backtrace"] == .bool(true))
        #expect(payload["dead"] == .bool(false))
    }

    @Test func jidsAre24HexAndDistinct() {
        let jids = (0..<1000).map { _ in JobPayload.newJID() }
        #expect(jids.allSatisfy(JobPayload.isValidJID))
        #expect(Set(jids).count == 1000)
    }

    @Test func floatsPrintLikeRuby() {
        #expect(JSONValue.format(1.0) == "1.0")
        #expect(JSONValue.format(1700000000.123456) == "1700000000.123456")
        #expect(JSONValue.format(-2.5) == "-2.5")
    }

    @Test func utcDate() {
        #expect(JobPayload.utcDate(0) == "1970-01-01")
        #expect(JobPayload.utcDate(1714521600) == "2024-05-01")
    }
}

@Suite struct JSONValueTests {
    @Test func roundTripKeepsOrderAndUnknownFields() throws {
        let text = #"{"class":"A","args":[1,2.5,"x\"y",null,true,{"k":[]}],"jid":"0123456789abcdef01234567","tags":["t"],"bid":"b","created_at":1700000000.5}"#
        let value = try JSONValue.parse(text)
        #expect(value.serialized() == text)
        #expect(value["args"]?.arrayValue?[0] == .int(1))
        #expect(value["args"]?.arrayValue?[1] == .double(2.5))
    }

    @Test func escapesAndUnicode() throws {
        let value = try JSONValue.parse(#""a\n\u00e9\ud83d\ude00/\/""#)
        #expect(value == .string("a\né😀//"))
        #expect(JSONValue.string("a\n\u{01}é").serialized() == #""a\n\u0001é""#)
    }

    @Test func rejectsMalformed() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "tru", "1 2", "\"abc"] {
            #expect(throws: JSONParseError.self) { try JSONValue.parse(bad) }
        }
    }

    @Test func parseFieldsBuildsOnlyTheKeysAskedFor() throws {
        let text = #"{"retry":true,"queue":"q","class":"A","args":[1,2.5,"x\"y",{"k":[]}],"jid":"0123456789abcdef01234567","created_at":1700000000.5,"enqueued_at":1.7e9,"t\u0061gs":["t"]}"#
        let fields = try JSONValue.parseFields(text, ["class", "jid", "args", "tags", "missing"])
        let full = try JSONValue.parse(text)
        #expect(fields[0] == full["class"])
        #expect(fields[1] == full["jid"])
        #expect(fields[2] == full["args"])
        #expect(fields[3] == .array([.string("t")]))  // an escaped key still matches
        #expect(fields[4] == nil)
        #expect(try JSONValue.parseFields("{}", ["class"]) == [nil])
        #expect(try JSONValue.parseFields(#" {"n":-12,"m":123456789012345678901} "#, ["n", "m"])
                == [.int(-12), .double(123456789012345678901)])
    }

    @Test func parseFieldsRejectsWhatParseRejects() {
        // Malformed anywhere, also in a field that is skipped; and documents that are not objects.
        for bad in ["", "[]", "1", "{", #"{"a":[1,]}"#, #"{"a" 1}"#, #"{"a":tru}"#, #"{"a":1} 2"#, #"{"a":"abc}"#,
                    #"{"a":1.2.3}"#, #"{"a":-}"#, #"{"a":1e}"#, #"{"a":"\x"}"#, #"{"a":{"b":1,}}"#] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSONValue.parseFields(bad, ["class"]) }
        }
        // A skipped number is accepted exactly when the parser would build it.
        for number in ["0", "-0.5", "1e9", "1.5E+3", "2.", ".5", "+1", "-", "1e", "1e+", "1.2.3", "1-2", "--1", "."] {
            let built = (try? JSONValue.parse(#"{"a":\#(number)}"#)) != nil
            let skipped = (try? JSONValue.parseFields(#"{"a":\#(number)}"#, ["class"])) != nil
            #expect(built == skipped, "\(number)")
        }
    }

    @Test func subscriptSetAppendsAndRemoves() {
        var v = JSONValue.object([("a", .int(1))])
        v["b"] = .int(2)
        v["a"] = nil
        #expect(v.serialized() == #"{"b":2}"#)
    }
}

@Suite struct JobRetryTests {
    struct Boom: Error {}

    @Test func sidekiqBackoff() {
        #expect(JobRetry.sidekiqDelay(count: 0, jitter: 0) == 15)
        #expect(JobRetry.sidekiqDelay(count: 0, jitter: 9) == 24)
        #expect(JobRetry.sidekiqDelay(count: 3, jitter: 2) == 81 + 15 + 8)
        #expect(JobRetry.sidekiqDelay(count: 24, jitter: 0) == 331_791)
    }

    @Test func firstFailureSetsFailedAtAndCountZero() {
        let retry = JobRetry()
        let payload = JobPayload.make(className: "A", args: [])
        let decision = retry.decide(payload: payload, queue: "default", error: JobError("bad", errorClass: "ArgumentError"), now: 1000)
        guard case .retry(let at, let msg) = decision else { Issue.record("\(decision)"); return }
        #expect(at >= 1015 && at <= 1024)
        #expect(msg["retry_count"] == .int(0))
        #expect(msg["failed_at"] == .double(1000))
        #expect(msg["retried_at"] == nil)
        #expect(msg["error_message"] == .string("bad"))
        #expect(msg["error_class"] == .string("ArgumentError"))
    }

    @Test func laterFailureSetsRetriedAtAndRetryQueue() {
        var payload = JobPayload.make(className: "A", args: [])
        payload["retry_count"] = .int(2)
        payload["failed_at"] = .double(1)
        payload["retry_queue"] = .string("slow")
        var retry = JobRetry()
        retry.delay = { _ in 1 }
        guard case .retry(let at, let msg) = retry.decide(payload: payload, queue: "default", error: Boom(), now: 50) else {
            Issue.record("expected a retry"); return
        }
        #expect(at == 51)
        #expect(msg["retry_count"] == .int(3))
        #expect(msg["retried_at"] == .double(50))
        #expect(msg["failed_at"] == .double(1))
        #expect(msg["queue"] == .string("slow"))
        #expect(msg["error_class"]?.stringValue?.hasSuffix("Boom") == true)
    }

    @Test func exhaustedGoesDeadOrIsDiscarded() {
        var payload = JobPayload.make(className: "A", args: [], options: JobOptions(retry: .attempts(2)))
        payload["retry_count"] = .int(1)
        let retry = JobRetry()
        guard case .dead(let msg) = retry.decide(payload: payload, queue: "q", error: Boom()) else {
            Issue.record("expected dead"); return
        }
        #expect(msg["retry_count"] == .int(2))
        payload["dead"] = .bool(false)
        #expect(retry.decide(payload: payload, queue: "q", error: Boom()) == .discard)
    }

    @Test func retryFalseDiscardsRetryZeroBuries() {
        let off = JobPayload.make(className: "A", args: [], options: JobOptions(retry: .disabled))
        #expect(JobRetry().decide(payload: off, queue: "q", error: Boom()) == .discard)
        let zero = JobPayload.make(className: "A", args: [], options: JobOptions(retry: .attempts(0)))
        guard case .dead = JobRetry().decide(payload: zero, queue: "q", error: Boom()) else {
            Issue.record("retry: 0 goes to the dead set at once"); return
        }
    }

    @Test func defaultIs25Retries() {
        var payload = JobPayload.make(className: "A", args: [])
        payload["retry_count"] = .int(23)
        guard case .retry = JobRetry().decide(payload: payload, queue: "q", error: Boom()) else { Issue.record("24th retry"); return }
        payload["retry_count"] = .int(24)
        guard case .dead = JobRetry().decide(payload: payload, queue: "q", error: Boom()) else { Issue.record("dead after 25"); return }
    }
}

@Suite struct QueueListTests {
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state
        }
    }

    @Test func strictWithoutWeights() {
        let list = QueueList(parsing: ["critical", "default", "low", "default"])
        #expect(list.strict)
        #expect(list.order() == ["critical", "default", "low"])
    }

    @Test func weightedShufflesByWeight() {
        let list = QueueList(parsing: ["critical,3", "default,1"])
        #expect(!list.strict)
        #expect(list.weighted == ["critical", "critical", "critical", "default"])
        var g = Seeded(state: 42)
        var firsts: [String: Int] = [:]
        for _ in 0..<4000 {
            let order = list.order(using: &g)
            #expect(Set(order) == ["critical", "default"] && order.count == 2)
            firsts[order[0], default: 0] += 1
        }
        // critical comes first with probability 3/4.
        #expect((2700...3300).contains(firsts["critical"] ?? 0))
    }

    @Test func privateListSharesTheQueuesHashtag() {
        let key = ReliableFetch.privateList(queueKey: "queue:default", identity: "host:1:abc")
        #expect(key == "{queue:default}:inprogress:host:1:abc")
    }

    @Test func deadPeerDetection() {
        #expect(ReliableFetch.peerIsDead("h:1:x", heartbeatExists: false, hostname: "h"))
        #expect(!ReliableFetch.peerIsDead("other:999999:x", heartbeatExists: true, hostname: "h"))
        // pid 2^22+ is above pid_max on a default kernel: no such process on this host.
        #expect(ReliableFetch.peerIsDead("h:4194999:x", heartbeatExists: true, hostname: "h"))
    }
}

@Suite struct RedisConfigTests {
    @Test func parsesURLs() {
        let c = RedisConfig(url: "redis://user:secret@example.com:6380/3")
        #expect(c?.host == "example.com" && c?.port == 6380 && c?.database == 3)
        #expect(c?.username == "user" && c?.password == "secret")
        let d = RedisConfig(url: "redis://127.0.0.1:7000")
        #expect(d?.port == 7000 && d?.database == 0 && d?.password == nil)
        #expect(RedisConfig(url: "http://x") == nil)
    }
}

@Suite struct PrefetchTests {
    static func work(_ i: Int) -> UnitOfWork { UnitOfWork(queueKey: "queue:q", job: "j\(i)") }

    @Test func fetchesClaimAtMostPerFetchAndTheCapacityInAll() {
        let buffer = PrefetchBuffer(perFetch: 3, capacity: 5)
        let a = buffer.reserve(), b = buffer.reserve(), c = buffer.reserve()
        #expect([a, b, c] == [3, 2, 0])
        buffer.store([Self.work(1), Self.work(2)], releasing: a)  // fewer than claimed
        buffer.release(b)
        #expect(buffer.count == 2)
        #expect(buffer.reserve() == 3)
    }

    @Test func takesInFetchOrderAndTakeAllEmpties() {
        let buffer = PrefetchBuffer(perFetch: 4, capacity: 8)
        let room = buffer.reserve()
        buffer.store((1...4).map(Self.work), releasing: room)
        #expect(buffer.take()?.job == "j1")
        #expect(buffer.take()?.job == "j2")
        #expect(buffer.takeAll().map(\.job) == ["j3", "j4"])
        #expect(buffer.take() == nil)
        #expect(buffer.count == 0)
    }

    @Test func zeroPrefetchHoldsNothing() {
        let buffer = PrefetchBuffer(perFetch: 0, capacity: 0)
        #expect(buffer.reserve() == 0)
        #expect(buffer.take() == nil)
    }

    @Test func everyMovedJobIsKept() throws {
        // A BLMOVE that timed out, then LMOVEs that found jobs pushed just after: all run.
        let replies: [RESPValue] = [.bulk(nil), .bulk(Array("a".utf8)), .null, .bulk(Array("b".utf8))]
        #expect(try ReliableFetch.movedAll(replies) == ["a", "b"])
        #expect(try ReliableFetch.movedAll([RESPValue.null, .bulk(nil)]) == [])
        #expect(throws: RedisError.self) { try ReliableFetch.movedAll([RESPValue.error("WRONGTYPE x")]) }
        #expect(try ReliableFetch.movedAll([RESPValue.error("WRONGTYPE x"), .bulk(Array("c".utf8))]) == ["c"])
    }
}
