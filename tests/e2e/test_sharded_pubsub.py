"""Sharded pub/sub (Redis 7): SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS /
SHARDNUMSUB, against Damselfly with 4 threads (subscribers on different threads) and a
real redis-server 7.0: the transcripts, raw bytes of confirmations and `smessage`
frames included, RESP2 and RESP3, must be equal. Shard channels are a namespace apart
from classic channels, and their confirmation count is their own."""

import pytest

from resp import RespConn
from test_pubsub import RawConn, run_both

NUM_THREADS = 4


@pytest.fixture(scope="module")
def servers(damselfly_module, redis_server):
    return [("damselfly", damselfly_module(f"--proactor_threads={NUM_THREADS}")), ("redis", redis_server)]


@pytest.mark.parametrize("proto", [2, 3])
def test_ssubscribe_spublish_equal_redis(servers, proto):
    def scenario(port):
        pub = RawConn(port)
        subs = [RawConn(port) for _ in range(NUM_THREADS)]
        try:
            out = []
            for s in subs + [pub]:
                if proto == 3:
                    out.append(s.call("HELLO", "3")[0])
            out.append(subs[0].raw_call("SSUBSCRIBE", "orders", "users", n=2))
            out.append(subs[1].raw_call("SSUBSCRIBE", "orders", "orders", n=2))
            out.append(subs[2].raw_call("SUBSCRIBE", "orders", n=1))       # classic: another namespace
            out.append(subs[2].raw_call("SSUBSCRIBE", "users", n=1))       # its own count: 1
            out.append(subs[3].raw_call("PSUBSCRIBE", "*", n=1))           # patterns never see smessage
            out.append(pub.call("SPUBLISH", "orders", "o1"))               # subs 0 and 1
            out.append(subs[0].raw(1))
            out.append(subs[1].raw(1))
            out.append(pub.call("SPUBLISH", "users", b"\x00\r\n\xff"))     # subs 0 and 2
            out.append(subs[0].raw(1))
            out.append(subs[2].raw(1))
            out.append(pub.call("PUBLISH", "orders", "classic"))           # subs 2 (channel) and 3 (pattern)
            out.append(subs[2].raw(1))
            out.append(subs[3].raw(1))
            out.append(pub.call("SPUBLISH", "nobody", "x"))
            out.append(sorted(pub.call("PUBSUB", "SHARDCHANNELS")[1], key=repr))
            out.append(pub.call("PUBSUB", "SHARDCHANNELS", "o*"))
            out.append(pub.call("PUBSUB", "SHARDNUMSUB", "orders", "users", "nobody"))
            out.append(pub.call("PUBSUB", "SHARDNUMSUB"))
            out.append(pub.call("PUBSUB", "CHANNELS"))
            out.append(pub.call("PUBSUB", "NUMSUB", "orders"))
            out.append(subs[1].raw_call("SUNSUBSCRIBE", "orders", "never", n=2))
            out.append(subs[1].raw_call("SUNSUBSCRIBE", n=1))              # none left: null name
            out.append(subs[2].raw_call("UNSUBSCRIBE", n=1))               # count 0, still a shard subscriber
            out.append(subs[2].raw_call("SUNSUBSCRIBE", n=1))
            # No arguments: every channel, in the server's dict order (Redis's hash seed is
            # random per process), so the names are compared as a set and the counts in order.
            replies = subs[0].raw_call("SUNSUBSCRIBE", n=2)[0]
            out.append((sorted((r[1][1] for r in replies), key=repr), [r[1][2] for r in replies]))
            out.append(pub.call("SPUBLISH", "orders", "gone"))
            out.append(pub.call("PUBSUB", "SHARDNUMSUB", "orders", "users"))
            return out
        finally:
            pub.close()
            for s in subs:
                s.close()
    run_both(servers, scenario)


def test_resp2_subscribed_mode_and_multi_equal_redis(servers):
    def scenario(port):
        c = RespConn(port)
        try:
            out = [c.call("SSUBSCRIBE", "a")]
            out.append(c.call("GET", "x"))                # only (P|S)SUBSCRIBE ... allowed
            out.append(c.call("PING"))
            out.append(c.call("UNSUBSCRIBE"))             # classic count 0, still subscribed
            out.append(c.call("GET", "x"))
            out.append(c.call("SUNSUBSCRIBE", "a"))
            out.append(c.call("GET", "x"))                # back to normal
            out.append(c.call("MULTI"))
            out.append(c.call("SSUBSCRIBE", "q"))
            out.append(c.call("EXEC"))                    # refused inside MULTI (DENY BLOCKING)
            out.append(c.call("SSUBSCRIBE"))
            out.append(c.call("SPUBLISH", "a"))
            out.append(c.call("RESET"))
            return out
        finally:
            c.close()
    run_both(servers, scenario)


def test_disconnect_drops_shard_subscriptions(servers):
    def scenario(port):
        with RespConn(port) as pub:
            s = RespConn(port)
            s.call("SSUBSCRIBE", "gone")
            out = [pub.call("PUBSUB", "SHARDNUMSUB", "gone")]
            s.close()
            for _ in range(200):
                if pub.call("PUBSUB", "SHARDNUMSUB", "gone")[1][1] == (":", 0):
                    break
                import time
                time.sleep(0.01)
            out.append(pub.call("PUBSUB", "SHARDNUMSUB", "gone"))
            out.append(pub.call("SPUBLISH", "gone", "x"))
            return out
    run_both(servers, scenario)


def test_client_list_counts_subscriptions_equal_redis(servers):
    def scenario(port):
        with RespConn(port) as admin, RespConn(port) as s:
            my_id = s.call("CLIENT", "ID")[1]
            s.call("SUBSCRIBE", "c1", "c2")
            s.call("PSUBSCRIBE", "p*")
            s.call("SSUBSCRIBE", "s1", "s2", "s3")
            listing = admin.call("CLIENT", "LIST", "ID", str(my_id))[1].decode()
            fields = dict(f.split("=", 1) for f in listing.split() if "=" in f)
            return [fields["flags"], fields["sub"], fields["psub"], fields["ssub"]]
    assert run_both(servers, scenario) == ["P", "2", "1", "3"]
