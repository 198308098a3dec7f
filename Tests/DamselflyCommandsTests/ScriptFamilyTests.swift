import DamselflyRuntime
import Glibc
import Synchronization
import Testing
@testable import DamselflyCommands

/// ``ScriptFamily`` through the real shard set (2 loops, 2 shards): the
/// bundled libraries, Redis 7's error suffix, and the running-script record
/// behind BUSY and SCRIPT KILL (the BUSY replies themselves come from
/// `Connection`, covered end to end in tests/e2e/test_script_kill.py).
@Suite struct ScriptFamilyTests {
    let h: CommandHarness = {
        let h = CommandHarness(loops: 2, shards: 2)
        ScriptFamily.register(h.registry)
        return h
    }()

    @Test func cmsgpackAndStructAreThere() {
        #expect(h.run(["eval", "return cmsgpack.pack({1, 'a', true})", "0"]) == .bulk([0x93, 0x01, 0xa1, 0x61, 0xc3]))
        #expect(h.run(["eval", "return {cmsgpack.unpack(cmsgpack.pack(300, 'x'))}", "0"])
            == .array([.int(300), .bulk("x")]))
        #expect(h.run(["eval", "return struct.pack('>I2', 258)", "0"]) == .bulk([1, 2]))
        #expect(h.run(["eval", "return {struct.unpack('<i2', ARGV[1])}", "0", "\u{7f}\u{7f}"])
            == .array([.int(0x7f7f), .int(3)]))
        #expect(h.run(["eval", "return struct.size('>I2i4')", "0"]) == .int(6))
    }

    @Test func raisedErrorsCarryTheScriptAndLine() {
        let body = "local a = 1\nreturn redis.call('INCR', KEYS[1])"
        let sha = ScriptFamily.sha(of: Array(body.utf8))
        #expect(h.run(["set", "s", "abc"]) == .ok)
        #expect(h.run(["eval", body, "1", "s"])
            == .error("ERR value is not an integer or out of range script: \(sha), on @user_script:2."))
        // redis.pcall's error table is returned, not raised: no suffix.
        #expect(h.run(["eval", "return redis.pcall('INCR', KEYS[1])", "1", "s"])
            == .error("ERR value is not an integer or out of range"))
    }

    @Test func killWithNothingRunning() {
        #expect(h.run(["script", "kill"]) == .error("NOTBUSY No scripts in execution right now."))
        #expect(h.engine.scripts.busyError() == nil)
        #expect(h.engine.scripts.requestKill(kind: .function) == "NOTBUSY No scripts in execution right now.")
    }

    /// A looping script on loop 0: once past the limit a client
    /// would get BUSY, and SCRIPT KILL from loop 1 stops it with Redis's error.
    @Test func scriptKillStopsALoopingScript() throws {
        h.engine.scripts.configure(timeLimitMillis: 20, defaultFlags: "")
        let body = "local i = 0 while true do i = i + 1 end"
        let sha = ScriptFamily.sha(of: Array(body.utf8))
        let reply = Mutex<RV?>(nil)
        let harness = h
        let thread = LoopThread.spawn(name: "eval") {
            let r = harness.run(["eval", body, "0"], on: 0)
            reply.withLock { $0 = r }
        }
        // Bounded wait for the hook to mark the script timed out (no timing is asserted).
        var busy: String? = nil
        for _ in 0..<4000 where busy == nil {
            busy = h.engine.scripts.busyError()
            if busy == nil { usleep(1000) }
        }
        #expect(busy == "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")
        // Every client is told BUSY, the script's own thread's too (its hook serves them).
        #expect(h.engine.scripts.busyError() == busy)
        // FUNCTION KILL may not stop an EVAL (Redis answers with the EVAL's BUSY text).
        #expect(h.engine.scripts.requestKill(kind: .function) == busy)
        #expect(h.run(["script", "kill"], on: 1) == .ok)
        LoopThread.join(thread)
        #expect(reply.withLock { $0 }
            == .error("ERR Script killed by user with SCRIPT KILL... script: \(sha), on @user_script:1."))
        #expect(h.engine.scripts.busyError() == nil)
        #expect(h.run(["script", "kill"], on: 1) == .error("NOTBUSY No scripts in execution right now."))
        #expect(h.run(["eval", "return 7", "0"], on: 0) == .int(7))
    }

    /// The record alone: a script that wrote cannot be killed.
    @Test func writtenScriptIsUnkillable() {
        let scripts = h.engine.scripts
        scripts.configure(timeLimitMillis: 0, defaultFlags: "")
        scripts.begin(loop: 0, kind: .eval)
        scripts.noteWrite(loop: 0)
        #expect(scripts.busyError() == nil)  // not timed out until the hook says so
        #expect(scripts.running[0].checkInterrupt() == false)
        #expect(scripts.busyError() != nil)
        #expect(scripts.requestKill(kind: .eval)?.hasPrefix("UNKILLABLE Sorry the script already executed write commands") == true)
        #expect(scripts.running[0].checkInterrupt() == false)
        scripts.end(loop: 0)
        #expect(scripts.busyError() == nil)
        // A function past the limit: SCRIPT KILL answers with the FUNCTION text.
        scripts.begin(loop: 0, kind: .function)
        _ = scripts.running[0].checkInterrupt()
        #expect(scripts.busyError()
            == "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.")
        #expect(scripts.requestKill(kind: .eval)
            == "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.")
        #expect(scripts.requestKill(kind: .function) == nil)
        #expect(scripts.running[0].checkInterrupt() == true)
        scripts.end(loop: 0)
        // A kill aimed at that run does not stop the thread's next script.
        scripts.begin(loop: 0, kind: .function)
        #expect(scripts.running[0].checkInterrupt() == false)
        scripts.end(loop: 0)
    }

    @Test func declaredFlagsAndDefaults() {
        #expect(ScriptFlags.declared(in: Array("--!df flags=allow-undeclared-keys, disable-atomicity\nreturn 1".utf8))
            == ["allow-undeclared-keys", "disable-atomicity"])
        #expect(ScriptFlags.declared(in: Array("#!lua flags=no-writes\nreturn 1".utf8)) == ["no-writes"])
        // The `#!lua` line is read as its shebang check splits it: options anywhere, any spacing.
        #expect(ScriptFlags.declared(in: Array("#!lua  flags=no-writes,allow-oom\nreturn 1".utf8)) == ["no-writes", "allow-oom"])
        #expect(ScriptFlags.declared(in: Array("#!lua\nreturn 1".utf8)) == nil)
        #expect(ScriptFlags.shebangError(in: Array("#!lua  flags=no-writes\nreturn 1".utf8)) == nil)
        #expect(ScriptFlags.declared(in: Array("return 1".utf8)) == nil)
        #expect(ScriptFlags.declared(in: Array("return 1 --!df flags=x".utf8)) == nil)
        h.engine.scripts.configure(timeLimitMillis: 5000, defaultFlags: "allow-undeclared-keys")
        #expect(h.engine.scripts.defaultFlags == ["allow-undeclared-keys"])
    }
}
