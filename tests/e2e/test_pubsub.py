"""Pub/sub end to end: SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE,
PUBLISH, PUBSUB CHANNELS / NUMSUB / NUMPAT.

Damselfly runs with 4 threads; connections are dealt to threads round robin,
so consecutive subscribers sit on different threads and PUBLISH has to reach
all of them.  Every scenario runs against Damselfly and a real redis-server
7.0 and the transcripts must be equal: tagged replies, and the raw bytes of the
confirmations, messages and RESP3 push frames.  Replies whose order is not
defined by Redis (PUBSUB CHANNELS, UNSUBSCRIBE with no argument over several
channels) are compared sorted.
"""

import contextlib
import time

import pytest

from resp import RespConn, encode

NUM_THREADS = 4


@pytest.fixture(scope="module")
def dfly(damselfly_module):
    return damselfly_module(f"--proactor_threads={NUM_THREADS}")


@pytest.fixture(scope="module")
def servers(dfly, redis_server):
    return [("damselfly", dfly), ("redis", redis_server)]


class RawConn(RespConn):
    """RespConn that can also hand back the raw bytes of the replies it read."""

    def __init__(self, port):
        super().__init__(port)
        self.log = b""

    def _fill(self):
        before = len(self.buf)
        super()._fill()
        self.log += self.buf[before:]

    def raw(self, n=1):
        """Read n replies; return (replies, their raw bytes)."""
        self.log = self.buf
        reps = [self.read_reply() for _ in range(n)]
        data = self.log[:len(self.log) - len(self.buf)]
        self.log = self.buf
        return reps, data

    def raw_unordered(self, n):
        """Read n replies whose relative order Redis leaves undefined; sorted (reply, raw) pairs."""
        return sorted(self.raw(1) for _ in range(n))

    def raw_call(self, *args, n=1):
        self.send_raw(encode(*args))
        return self.raw(n)


def run_both(servers, scenario):
    out = {}
    for name, srv in servers:
        with RespConn(srv.port) as admin:
            admin.call("FLUSHALL")
        out[name] = scenario(srv.port)
    a, b = out["damselfly"], out["redis"]
    assert a == b, "\n".join(f"{i}: dfly={x!r}\n   redis={y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y) or (a, b)
    return a


def wait_numsub(conn, channel, n, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rep = conn.call("PUBSUB", "NUMSUB", channel)
        if rep[1][1] == (":", n):
            return
        time.sleep(0.005)
    raise AssertionError(f"NUMSUB {channel} never reached {n}")


@pytest.mark.parametrize("proto", [2, 3])
def test_subscribe_publish_across_threads_equal_redis(servers, proto):
    def scenario(port):
        pub = RawConn(port)
        subs = [RawConn(port) for _ in range(NUM_THREADS)]   # one per thread (round robin)
        try:
            out = []
            for s in subs:
                if proto == 3:
                    out.append(s.call("HELLO", "3")[0])
            out.append(subs[0].raw_call("SUBSCRIBE", "news", "sports", n=2))
            out.append(subs[1].raw_call("SUBSCRIBE", "news", n=1))
            out.append(subs[2].raw_call("PSUBSCRIBE", "n*", "*s", n=2))
            out.append(subs[3].raw_call("SUBSCRIBE", "news", "news", n=2))   # duplicate: count stays 1
            out.append(subs[3].raw_call("PSUBSCRIBE", "new?", n=1))
            out.append(pub.call("PUBLISH", "news", "hello"))   # 3 channel + 3 pattern receivers
            out.append(subs[0].raw(1))
            out.append(subs[1].raw(1))
            out.append(subs[2].raw_unordered(2))
            out.append(subs[3].raw(2))
            out.append(pub.call("PUBLISH", "sports", "goal"))  # subs[0] + '*s'
            out.append(subs[0].raw(1))
            out.append(subs[2].raw(1))
            out.append(pub.call("PUBLISH", "nobody", "x"))     # only 'n*'
            out.append(subs[2].raw(1))
            out.append(pub.call("PUBLISH", "zzz", "x"))
            # binary-safe payloads
            payload = b"\x00\r\n\xff" * 10
            out.append(pub.call("PUBLISH", "news", payload))
            out.append(subs[1].raw(1))
            out.append(subs[0].raw(1))
            out.append(subs[2].raw_unordered(2))
            out.append(subs[3].raw(2))
            # unsubscribing
            out.append(subs[1].raw_call("UNSUBSCRIBE", "news", "never", n=2))
            out.append(subs[2].raw_call("PUNSUBSCRIBE", "*s", n=1))
            out.append(subs[3].raw_call("UNSUBSCRIBE", n=1))             # only 'news': one reply
            out.append(subs[3].raw_call("PUNSUBSCRIBE", n=1))
            out.append(subs[3].raw_call("UNSUBSCRIBE", n=1))             # none left: null channel
            out.append(subs[3].raw_call("PUNSUBSCRIBE", n=1))
            out.append(pub.call("PUBLISH", "news", "bye"))               # subs[0] + 'n*'
            out.append(subs[0].raw(1))
            out.append(subs[2].raw(1))
            return out
        finally:
            pub.close()
            for s in subs:
                s.close()
    run_both(servers, scenario)


def test_pubsub_introspection_equal_redis(servers):
    def scenario(port):
        admin = RespConn(port)
        subs = [RespConn(port) for _ in range(3)]
        try:
            out = [admin.call("PUBSUB", "CHANNELS"), admin.call("PUBSUB", "NUMPAT"),
                   admin.call("PUBSUB", "NUMSUB"), admin.call("PUBSUB", "NUMSUB", "a")]
            subs[0].pipeline([["SUBSCRIBE", "a", "b", "c:1"]] * 1)
            subs[0].read_reply(), subs[0].read_reply()
            subs[1].call("SUBSCRIBE", "a")
            subs[2].send_raw(encode("PSUBSCRIBE", "c:*", "x"))
            subs[2].read_reply(), subs[2].read_reply()
            subs[2].send_raw(encode("PSUBSCRIBE", "x"))                  # duplicate pattern
            subs[2].read_reply()
            chans = admin.call("PUBSUB", "CHANNELS")
            out.append((chans[0], sorted(chans[1])))
            chans = admin.call("PUBSUB", "CHANNELS", "c:*")
            out.append((chans[0], sorted(chans[1])))
            out.append(admin.call("PUBSUB", "CHANNELS", "zz*"))
            out.append(admin.call("PUBSUB", "NUMSUB", "a", "b", "c:1", "nope", "a"))
            out.append(admin.call("PUBSUB", "NUMPAT"))
            out.append(admin.call("PUBSUB", "FOO"))
            out.append(admin.call("PUBSUB", "NUMPAT", "x"))
            out.append(admin.call("PUBSUB", "CHANNELS", "a", "b"))
            subs[1].close()
            wait_numsub(admin, "a", 1)                                  # a disconnect unsubscribes
            out.append(admin.call("PUBSUB", "NUMSUB", "a"))
            subs[2].close()
            deadline = time.monotonic() + 3
            while admin.call("PUBSUB", "NUMPAT") != (":", 0) and time.monotonic() < deadline:
                time.sleep(0.005)
            out.append(admin.call("PUBSUB", "NUMPAT"))
            out.append(admin.call("PUBLISH", "a", "m"))
            return out
        finally:
            admin.close()
            for s in subs:
                s.close()
    run_both(servers, scenario)


def test_resp2_subscribed_mode_restrictions_equal_redis(servers):
    def scenario(port):
        with RawConn(port) as c:
            out = [c.raw_call("SUBSCRIBE", "ch")]
            out.append(c.raw_call("GET", "k"))
            out.append(c.raw_call("SET", "k", "v"))
            out.append(c.raw_call("PUBLISH", "ch", "x"))
            out.append(c.raw_call("PING"))
            out.append(c.raw_call("PING", "hello"))
            out.append(c.raw_call("PSUBSCRIBE", "p*"))
            out.append(c.raw_call("INFO"))
            out.append(c.raw_call("UNSUBSCRIBE", "ch"))
            out.append(c.raw_call("PING"))                  # still subscribed to a pattern
            out.append(c.raw_call("PUNSUBSCRIBE", "p*"))
            out.append(c.raw_call("PING"))                  # out of subscribed mode
            out.append(c.raw_call("GET", "k"))
            out.append(c.raw_call("SUBSCRIBE", "again"))
            out.append(c.raw_call("RESET"))                 # leaves subscribed mode
            out.append(c.raw_call("PING"))
            out.append(c.raw_call("PUBSUB", "NUMSUB", "again"))
            return out
    run_both(servers, scenario)


def test_resp3_push_frames_and_commands_while_subscribed_equal_redis(servers):
    def scenario(port):
        c, pub = RawConn(port), RespConn(port)
        try:
            out = [c.call("HELLO", "3")[0]]
            out.append(c.raw_call("SUBSCRIBE", "r3"))
            out.append(c.raw_call("SET", "k3", "v"))        # allowed in RESP3
            out.append(c.raw_call("GET", "k3"))
            out.append(c.raw_call("PING"))
            out.append(pub.call("PUBLISH", "r3", "m1"))
            out.append(c.raw(1))
            # a push arriving between commands: the reply to the next command still arrives
            out.append(pub.call("PUBLISH", "r3", "m2"))
            out.append(c.raw_call("GET", "k3", n=2))
            out.append(c.raw_call("PSUBSCRIBE", "r*"))
            out.append(pub.call("PUBLISH", "r3", "m3"))
            out.append(c.raw(2))   # channel message first, then the pattern's
            out.append(c.raw_call("UNSUBSCRIBE", "r3"))
            out.append(c.raw_call("PUNSUBSCRIBE", "r*"))
            out.append(c.raw_call("UNSUBSCRIBE"))
            return out
        finally:
            c.close()
            pub.close()
    run_both(servers, scenario)


def test_many_messages_arrive_in_order_on_other_threads(servers):
    def scenario(port):
        pub = RespConn(port)
        subs = [RespConn(port) for _ in range(NUM_THREADS - 1)]
        try:
            for s in subs:
                s.call("SUBSCRIBE", "stream")
            counts = pub.pipeline([["PUBLISH", "stream", str(i)] for i in range(300)])
            got = []
            for s in subs:
                got.append([s.read_reply()[1][2][1] for _ in range(300)])
            assert all(g == [str(i).encode() for i in range(300)] for g in got)
            return [counts[0], counts[-1], len(got)]
        finally:
            pub.close()
            for s in subs:
                s.close()
    assert run_both(servers, scenario) == [(":", 3), (":", 3), 3]


def test_publish_from_multi_and_counts_equal_redis(servers):
    def scenario(port):
        c, s = RespConn(port), RespConn(port)
        try:
            s.call("SUBSCRIBE", "tx")
            out = c.pipeline([["MULTI"], ["PUBLISH", "tx", "a"], ["SET", "k", "1"], ["PUBLISH", "tx", "b"], ["EXEC"]])
            out += [s.read_reply(), s.read_reply()]
            out.append(c.call("PUBLISH", "tx"))             # wrong arity
            return out
        finally:
            c.close()
            s.close()
    run_both(servers, scenario)


@pytest.mark.parametrize("proto", [2, 3])
def test_a_subscriber_gets_the_message_before_replies_to_what_follows_the_publish(servers, proto):
    # Redis writes a message into every subscriber's buffer before PUBLISH returns, so what a
    # subscriber sends after the publisher has its answer is answered after the message.
    # Damselfly posted the message to the subscriber's thread and answered PUBLISH at once:
    # under load the subscriber's UNSUBSCRIBE confirmation (and later replies) came first,
    # and test_monitor's CLIENT REPLY OFF scenario saw the message after its last reply.
    def scenario(port):
        with contextlib.ExitStack() as opened:
            pub = opened.enter_context(RespConn(port))
            # One subscriber per thread (connections are dealt round robin).
            subs = [opened.enter_context(RawConn(port)) for _ in range(NUM_THREADS)]
            out = []
            for s in subs:
                if proto == 3:
                    out.append(s.call("HELLO", "3")[0])
                out.append(s.raw_call("SUBSCRIBE", "order", n=1))
            for i in range(50):
                out.append(pub.call("PUBLISH", "order", str(i)))
                for s in subs:
                    s.send_raw(encode("PING", str(i)))
                for s in subs:
                    out.append(s.raw(2))   # the message, then the PING's reply
            out.extend(s.raw_call("UNSUBSCRIBE", "order", n=1) for s in subs)
            return out
    run_both(servers, scenario)


def test_a_resp3_subscriber_publishing_gets_its_message_before_the_count(servers):
    # Redis: the message is written to the publishing subscriber before PUBLISH's own reply,
    # and CLIENT REPLY SKIP drops the count but not the message. Damselfly sent the message
    # after the reply (it went through the loop's inbox even for its own connection).
    def scenario(port):
        with RawConn(port) as c:
            out = [c.call("HELLO", "3")[0]]
            out.append(c.raw_call("SUBSCRIBE", "self", n=1))
            out.append(c.raw_call("PUBLISH", "self", "hi", n=2))
            c.send_raw(encode("CLIENT", "REPLY", "SKIP") + encode("PUBLISH", "self", "x") + encode("PING"))
            out.append(c.raw(2))
            return out
    run_both(servers, scenario)
