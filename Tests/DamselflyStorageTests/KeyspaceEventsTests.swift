import Synchronization
import Testing
@testable import DamselflyStorage

/// Messages a database published, as (channel, message) strings.
private final class Recorder: Sendable {
    let messages = Mutex<[(String, String)]>([])

    func connect(_ events: KeyspaceEvents) {
        events.connect { channel, message in
            self.messages.withLock { $0.append((String(decoding: channel, as: UTF8.self), String(decoding: message, as: UTF8.self))) }
        }
    }

    var all: [String] { messages.withLock { $0.map { "\($0.0) \($0.1)" } } }
}

@Suite struct KeyspaceEventsTests {
    @Test func classLettersParseAndPrintAsRedis() {
        #expect(KeyspaceEventClass.parse("KEA")?.canonicalText == "AKE")
        #expect(KeyspaceEventClass.parse("EA")?.canonicalText == "AE")
        #expect(KeyspaceEventClass.parse("gKE")?.canonicalText == "gKE")
        #expect(KeyspaceEventClass.parse("$lshzxeKE")?.canonicalText == "$lshzxeKE")
        #expect(KeyspaceEventClass.parse("g$lshzxetd")?.canonicalText == "A")
        // Redis's quirk, kept: with every A class set it prints "A" and never reaches "n".
        #expect(KeyspaceEventClass.parse("Anm")?.canonicalText == "Am")
        #expect(KeyspaceEventClass.parse("gn")?.canonicalText == "gn")
        #expect(KeyspaceEventClass.parse("")?.canonicalText == "")
        #expect(KeyspaceEventClass.parse("KEQ") == nil)
        #expect(KeyspaceEventClass.parse("a") == nil)
    }

    @Test func newAndExpiredComeFromTheDatabaseInItsNumber() {
        let events = KeyspaceEvents()
        let recorder = Recorder()
        recorder.connect(events)
        let keyspace = Keyspace(databaseCount: 4, events: events)
        let flags: KeyspaceEventClass = [.keyspace, .keyevent, .new, .expired]
        keyspace.setNotifyFlags(flags.rawValue)
        let db = keyspace.databases[2]
        _ = db.insert("k", "v", expireAtMs: 100)
        #expect(db.find("k", nowMs: 50) != nil)
        #expect(db.find("k", nowMs: 200) == nil)
        #expect(recorder.all == [
            "__keyspace@2__:k new", "__keyevent@2__:new k",
            "__keyspace@2__:k expired", "__keyevent@2__:expired k",
        ])
        // SWAPDB: the database now numbered 3 says so.
        keyspace.swapDatabases(2, 3)
        _ = keyspace.databases[3].insert("j", "v")
        #expect(recorder.all.suffix(2) == ["__keyspace@3__:j new", "__keyevent@3__:new j"])
    }

    @Test func activeExpiryAndMaskedClasses() {
        let events = KeyspaceEvents()
        let recorder = Recorder()
        recorder.connect(events)
        let keyspace = Keyspace(databaseCount: 1, events: events)
        keyspace.setNotifyFlags(KeyspaceEventClass([.keyevent, .expired]).rawValue)
        let db = keyspace.databases[0]
        _ = db.insert("a", "1", expireAtMs: 10)
        _ = db.insert("b", "1")
        #expect(keyspace.activeExpire(nowMs: 20) == 1)
        // `new` is off and K is off: only the keyevent channel of `expired`.
        #expect(recorder.all == ["__keyevent@0__:expired a"])
        keyspace.setNotifyFlags(0)
        _ = db.insert("c", "1", expireAtMs: 10)
        #expect(keyspace.activeExpire(nowMs: 20) == 1)
        #expect(recorder.all.count == 1)
    }
}
