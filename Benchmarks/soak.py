#!/usr/bin/env python3
"""Sidekiq-shaped soak: does the server's RSS stay flat under a queue fleet's traffic?

Runs for ``--seconds`` against one or two servers (Damselfly, and with ``--against-redis`` a
redis-server beside it, both driven at the same time by the same load) and checks two things:

* **Bookkeeping.** Every job pushed (LPUSH, or ZADD into ``schedule`` and moved by the scheduler
  script) is either popped by a processor or still in ``queue:default`` / ``queue:low`` /
  ``schedule`` at the end; no command answered an error; the server is still alive.
* **Memory.** The server's VmRSS (``/proc/<pid>/status``) is sampled every ``--sample-every``
  seconds into a CSV. After the first ``--warmup`` fraction of the run a least-squares line is
  fitted; its slope is printed in MB/hour and in MB/hour per 100 connections, and checked against
  ``--max-slope`` (MB/hour per 100 processor connections) unless ``--no-slope-check``.

The load, per server (all on one asyncio loop, plain RESP over TCP, no client library):

* ``--processors`` connections each looping ``BRPOP queue:default queue:low 2``; a job popped is
  acknowledged the way Sidekiq does it: ``MULTI; INCR stat:processed; INCR stat:processed:<day>;
  EXEC``. Each processor lives a random time (mean ``--churn``) and then reconnects, always
  between two commands, so no job is ever in flight when a socket closes.
* ``--ghosts`` connections that BRPOP a queue nobody pushes to and hang up while blocked (the
  disconnect-while-parked path), then reconnect.
* One pusher: bursts of 1..``--burst`` Sidekiq job payloads (JSON with class, args, jid,
  timestamps) LPUSHed to either queue, a burst every ``--burst-every`` seconds on average; some
  jobs go to the ``schedule`` sorted set with a score a few seconds ahead instead.
* One scheduler: every second EVALSHA (EVAL on NOSCRIPT) of a script that moves due jobs:
  ``ZRANGEBYSCORE schedule -inf now LIMIT 0 100``, then ``ZREM`` + ``LPUSH`` per job (the
  three keys declared).
* One heartbeat per 10 processors: every 5 s ``MULTI; SADD processes id; HSET id ...; EXPIRE id
  60; EXEC``, plus ``SETEX`` of a lock key and an ``EXPIRE`` of a stats key.

Outputs under ``--out`` (default a temporary directory, printed): ``soak-<server>.csv``
(t_seconds, rss_kb, connected_clients, jobs_pushed, jobs_popped), ``soak-summary.json``, and
``soak.png`` when matplotlib is importable.

Exit status: 0 when every check passed, 1 when one failed, 2 on a usage or start-up error.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# KEYS: schedule, queue:default, queue:low (declared: Damselfly refuses undeclared keys on
# another shard, and so would Redis Cluster).
SCHEDULER_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
local moved = 0
for _, job in ipairs(due) do
  if redis.call('ZREM', KEYS[1], job) == 1 then
    local q = cjson.decode(job)['queue'] == 'low' and KEYS[3] or KEYS[2]
    redis.call('LPUSH', q, job)
    moved = moved + 1
  end
end
return moved
"""

QUEUES = ("queue:default", "queue:low")
GHOST_QUEUE = "queue:ghost"


# MARK: - RESP

class RespError(Exception):
    pass


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """One RESP2 connection. Error replies come back as ``RespError`` values, not raised."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def _reply(self):
        line = await self.r.readuntil(b"\r\n")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body
        if kind == b"-":
            return RespError(body.decode(errors="replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            n = int(body)
            if n < 0:
                return None
            data = await self.r.readexactly(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(body)
            if n < 0:
                return None
            return [await self._reply() for _ in range(n)]
        raise RespError(f"protocol: unexpected {line!r}")

    async def call(self, *args):
        self.w.write(encode(*args))
        return await self._reply()

    async def pipeline(self, commands):
        self.w.write(b"".join(encode(*c) for c in commands))
        return [await self._reply() for _ in commands]

    def close(self):
        try:
            self.w.close()
        except Exception:  # noqa: BLE001 - closing a dead socket is fine
            pass


# MARK: - Servers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server under test: started here (with its own private ``--dir``) or given by host:port."""

    def __init__(self, name, host, port, proc=None, workdir=None, pid=None):
        self.name, self.host, self.port = name, host, port
        self.proc, self.workdir, self.pid = proc, workdir, pid

    @classmethod
    def start(cls, name, argv_for_port):
        workdir = tempfile.mkdtemp(prefix=f"soak-{name}-")
        port = free_port()
        argv = argv_for_port(port, workdir)
        log = open(os.path.join(workdir, "server.log"), "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir)
        srv = cls(name, "127.0.0.1", port, proc, workdir, proc.pid)
        srv.argv = argv
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"error: {name} exited with {proc.returncode} at start-up "
                                 f"(log: {workdir}/server.log)")
            try:
                with socket.create_connection((srv.host, port), timeout=1) as s:
                    s.sendall(encode("PING"))
                    if s.recv(64).startswith(b"+PONG"):
                        return srv
            except OSError:
                pass
            time.sleep(0.05)
        proc.kill()
        raise SystemExit(f"error: {name} did not answer PING (log: {workdir}/server.log)")

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False

    def rss_kb(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.proc.returncode


# MARK: - Load

class Load:
    """The fleet for one server, and its counters."""

    def __init__(self, server, args, rng):
        self.s, self.a, self.rng = server, args, rng
        self.pushed = 0        # jobs LPUSHed or ZADDed by the pusher (acknowledged by the server)
        self.popped = 0        # jobs a BRPOP returned
        self.timeouts = 0      # BRPOPs that came back nil after 2 s
        self.moved = 0         # jobs the scheduler script moved
        self.reconnects = 0
        self.ghost_hangups = 0
        self.transactions = 0
        self.errors = []       # (where, text), the first few kept
        self.error_count = 0
        self.stopping = False
        self.jid = 0

    def error(self, where, text):
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(f"{where}: {text}")

    def check(self, where, reply):
        if isinstance(reply, RespError):
            self.error(where, str(reply))
        elif isinstance(reply, list):
            for r in reply:
                self.check(where, r)
        return reply

    async def connect(self):
        return await Conn.open(self.s.host, self.s.port)

    def job(self, queue, now):
        self.jid += 1
        return json.dumps({
            "class": self.rng.choice(("HardWorker", "MailerJob", "ReportJob")),
            "args": [self.jid, "x" * self.rng.randint(0, 200)],
            "retry": True, "queue": queue.split(":", 1)[1],
            "jid": "%024x" % self.rng.getrandbits(96),
            "created_at": now, "enqueued_at": now,
        }, separators=(",", ":"))

    async def processor(self, ident):
        day = time.strftime("%Y-%m-%d")
        while not self.stopping:
            conn = await self.connect()
            life_end = time.monotonic() + self.rng.expovariate(1.0 / self.a.churn)
            try:
                while not self.stopping and time.monotonic() < life_end:
                    r = self.check("BRPOP", await conn.call("BRPOP", *QUEUES, 2))
                    if r is None:
                        self.timeouts += 1
                        continue
                    if isinstance(r, RespError):
                        continue
                    self.popped += 1
                    res = await conn.pipeline([("MULTI",), ("INCR", "stat:processed"),
                                               ("INCR", f"stat:processed:{day}"), ("EXEC",)])
                    self.check("MULTI/EXEC", res)
                    self.transactions += 1
            finally:
                conn.close()
            self.reconnects += 1

    async def ghost(self):
        """BRPOPs a queue nobody feeds and hangs up while parked, then comes back."""
        while not self.stopping:
            conn = await self.connect()
            conn.w.write(encode("BRPOP", GHOST_QUEUE, 2))
            await asyncio.sleep(self.rng.uniform(0.05, 1.5))
            conn.close()
            self.ghost_hangups += 1

    async def pusher(self):
        conn = await self.connect()
        try:
            while not self.stopping:
                await asyncio.sleep(self.rng.expovariate(1.0 / self.a.burst_every))
                if self.stopping:
                    break
                now = time.time()
                n = self.rng.randint(1, self.a.burst)
                cmds, counted = [], 0
                for _ in range(n):
                    q = self.rng.choice(QUEUES)
                    if self.rng.random() < 0.1:
                        cmds.append(("ZADD", "schedule", "%.3f" % (now + self.rng.uniform(0.5, 5)),
                                     self.job(q, now)))
                    else:
                        cmds.append(("LPUSH", q, self.job(q, now)))
                    counted += 1
                replies = await conn.pipeline(cmds)
                for r in replies:
                    if isinstance(r, RespError):
                        self.error("push", str(r))
                    else:
                        self.pushed += 1
        finally:
            conn.close()

    async def scheduler(self):
        conn = await self.connect()
        try:
            sha = await conn.call("SCRIPT", "LOAD", SCHEDULER_LUA)
            self.check("SCRIPT LOAD", sha)
            while not self.stopping:
                await asyncio.sleep(1.0)
                now = "%.3f" % time.time()
                keys = ("schedule",) + QUEUES
                r = await conn.call("EVALSHA", sha, len(keys), *keys, now)
                if isinstance(r, RespError) and str(r).startswith("NOSCRIPT"):
                    r = await conn.call("EVAL", SCHEDULER_LUA, len(keys), *keys, now)
                if isinstance(self.check("scheduler", r), int):
                    self.moved += r
        finally:
            conn.close()

    async def heartbeat(self, ident):
        conn = await self.connect()
        key = f"proc:{os.getpid()}:{ident}"
        try:
            while not self.stopping:
                res = await conn.pipeline([
                    ("MULTI",), ("SADD", "processes", key),
                    ("HSET", key, "info", '{"hostname":"soak","concurrency":10}', "busy", 0,
                     "beat", "%.3f" % time.time()),
                    ("EXPIRE", key, 60), ("EXEC",),
                    ("SETEX", f"lock:{ident}", 10, "held"),
                    ("EXPIRE", "stat:processed", 3600),
                ])
                self.check("heartbeat", res)
                self.transactions += 1
                await asyncio.sleep(5)
        finally:
            conn.close()

    async def remaining(self):
        conn = await self.connect()
        try:
            r = await conn.pipeline([("LLEN", QUEUES[0]), ("LLEN", QUEUES[1]), ("ZCARD", "schedule")])
            self.check("final count", r)
            return sum(x for x in r if isinstance(x, int))
        finally:
            conn.close()


async def run_load(load, seconds):
    a = load.a
    tasks = [asyncio.create_task(load.processor(i)) for i in range(a.processors)]
    tasks += [asyncio.create_task(load.ghost()) for _ in range(a.ghosts)]
    tasks += [asyncio.create_task(load.heartbeat(i)) for i in range(max(1, a.processors // 10))]
    feeders = [asyncio.create_task(load.pusher()), asyncio.create_task(load.scheduler())]
    await asyncio.sleep(seconds)
    load.stopping = True
    # Feeders first; processors finish the BRPOP they are in (at most 2 s) and leave between commands.
    results = await asyncio.gather(*feeders, *tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            load.error("task", repr(r))


async def sampler(servers, loads, out, every, stop_at):
    files = {s.name: open(os.path.join(out, f"soak-{s.name}.csv"), "w") for s in servers}
    series = {s.name: [] for s in servers}
    for f in files.values():
        f.write("t_seconds,rss_kb,connected_clients,jobs_pushed,jobs_popped\n")
    t0 = time.monotonic()
    while True:
        t = time.monotonic() - t0
        for s, load in zip(servers, loads):
            rss = s.rss_kb()
            clients = ""
            try:
                c = await Conn.open(s.host, s.port)
                info = await c.call("INFO", "clients")
                c.close()
                if isinstance(info, bytes):
                    for line in info.decode().splitlines():
                        if line.startswith("connected_clients:"):
                            clients = line.split(":", 1)[1].strip()
            except OSError:
                pass
            if rss is not None:
                series[s.name].append((t, rss))
            files[s.name].write(f"{t:.1f},{rss if rss is not None else ''},{clients},"
                                f"{load.pushed},{load.popped}\n")
            files[s.name].flush()
        if time.monotonic() >= stop_at:
            break
        await asyncio.sleep(min(every, max(0.0, stop_at - time.monotonic())))
    for f in files.values():
        f.close()
    return series


def fit_slope(points, warmup):
    """Least-squares slope (kB/s) of the points after the first ``warmup`` fraction of the time span."""
    if len(points) < 3:
        return None, len(points)
    t_end = points[-1][0]
    tail = [(t, v) for t, v in points if t >= warmup * t_end]
    if len(tail) < 3:
        return None, len(tail)
    n = len(tail)
    mt = sum(t for t, _ in tail) / n
    mv = sum(v for _, v in tail) / n
    den = sum((t - mt) ** 2 for t, _ in tail)
    if den == 0:
        return None, n
    return sum((t - mt) * (v - mv) for t, v in tail) / den, n


def plot(series, out, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, pts in series.items():
        ax.plot([t / 60 for t, _ in pts], [v / 1024 for _, v in pts], label=name)
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"Soak: {args.processors} BRPOP processors, bursts, churn, scripts, MULTI")
    ax.axvline(args.warmup * args.seconds / 60, color="grey", linestyle=":", label="warm-up end")
    ax.legend()
    path = os.path.join(out, "soak.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


async def main_async(args, servers):
    rng = random.Random(args.seed)
    loads = [Load(s, args, random.Random(rng.random())) for s in servers]
    stop_at = time.monotonic() + args.seconds
    sample_task = asyncio.create_task(sampler(servers, loads, args.out, args.sample_every, stop_at))
    await asyncio.gather(*(run_load(l, args.seconds) for l in loads))
    series = await sample_task
    remaining = []
    for load in loads:
        try:
            remaining.append(await load.remaining())
        except OSError as e:
            load.error("final count", repr(e))
            remaining.append(None)
    return loads, series, remaining


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="length of the run [60]")
    p.add_argument("--damselfly-bin", help="start this Damselfly binary (its own --dir)")
    p.add_argument("--threads", type=int, default=2, help="Damselfly --proactor_threads [2]")
    p.add_argument("--host", default="127.0.0.1", help="with --port: soak a server already running")
    p.add_argument("--port", type=int, help="soak the server on host:port instead of starting one")
    p.add_argument("--pid", type=int, help="its pid for RSS (default: INFO's process_id)")
    p.add_argument("--name", default="server", help="label of a --port server [server]")
    p.add_argument("--against-redis", action="store_true",
                   help="also start a redis-server and drive it with the same load at the same time")
    p.add_argument("--processors", type=int, default=100, help="idle BRPOP connections [100]")
    p.add_argument("--ghosts", type=int, default=5, help="connections that hang up while blocked [5]")
    p.add_argument("--churn", type=float, default=30, help="mean processor lifetime, seconds [30]")
    p.add_argument("--burst", type=int, default=200, help="largest push burst [200]")
    p.add_argument("--burst-every", type=float, default=3, help="mean seconds between bursts [3]")
    p.add_argument("--sample-every", type=float, default=2, help="RSS sampling period, seconds [2]")
    p.add_argument("--warmup", type=float, default=0.25, help="fraction of the run left out of the fit [0.25]")
    p.add_argument("--max-slope", type=float, default=1.0,
                   help="bound on the fitted slope, MB/hour per 100 processor connections [1.0]")
    p.add_argument("--no-slope-check", action="store_true", help="print the slope, do not fail on it")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="directory for CSV/JSON/PNG (default: a new temporary one)")
    p.add_argument("--replot", action="store_true",
                   help="only redraw soak.png from the soak-*.csv files in --out (with matplotlib)")
    a = p.parse_args(argv)
    if a.replot and not a.out:
        p.error("--replot needs --out")
    if not a.replot and not a.port and not a.damselfly_bin and not a.against_redis:
        p.error("give --damselfly-bin, --port, or --against-redis")
    return a


def replot(args):
    series = {}
    for name in sorted(os.listdir(args.out)):
        if name.startswith("soak-") and name.endswith(".csv"):
            with open(os.path.join(args.out, name)) as f:
                rows = [line.split(",") for line in f.read().splitlines()[1:]]
            series[name[5:-4]] = [(float(r[0]), int(r[1])) for r in rows if r[1]]
    summary_path = os.path.join(args.out, "soak-summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        args.seconds, args.processors = summary["seconds"], summary["processors"]
        args.warmup = summary["warmup"]
    path = plot(series, args.out, args)
    print(path or "matplotlib not importable: no plot")
    return 0 if path else 1


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        return replot(args)
    args.out = args.out or tempfile.mkdtemp(prefix="soak-")
    os.makedirs(args.out, exist_ok=True)
    servers = []
    try:
        if args.damselfly_bin:
            binary = os.path.abspath(args.damselfly_bin)
            servers.append(Server.start("damselfly", lambda port, d: [
                binary, f"--port={port}", "--bind=127.0.0.1", f"--dir={d}", "--dbfilename=soak.rdb",
                f"--proactor_threads={args.threads}"]))
        if args.port:
            srv = Server(args.name, args.host, args.port, pid=args.pid)
            if srv.pid is None:
                with socket.create_connection((args.host, args.port), timeout=5) as s:
                    s.sendall(encode("INFO", "server"))
                    time.sleep(0.2)
                    text = s.recv(65536).decode(errors="replace")
                for line in text.splitlines():
                    if line.startswith("process_id:"):
                        srv.pid = int(line.split(":")[1])
            servers.append(srv)
        if args.against_redis:
            if not shutil.which("redis-server"):
                raise SystemExit("error: --against-redis needs redis-server on PATH")
            servers.append(Server.start("redis", lambda port, d: [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                "--save", "", "--appendonly", "no", "--maxclients", "10000"]))
        print(f"soak: {args.seconds:.0f} s, {args.processors} processors, {args.ghosts} ghosts, "
              f"servers: {', '.join(f'{s.name}@{s.port} pid {s.pid}' for s in servers)}; out: {args.out}",
              flush=True)
        loads, series, remaining = asyncio.run(main_async(args, servers))
    except KeyboardInterrupt:
        for s in servers:
            s.stop()
        return 1

    failed = False
    summary = {"seconds": args.seconds, "processors": args.processors, "ghosts": args.ghosts,
               "warmup": args.warmup, "max_slope_mb_per_hour_per_100": args.max_slope, "servers": {}}
    for s, load, left in zip(servers, loads, remaining):
        pts = series.get(s.name, [])
        slope, n = fit_slope(pts, args.warmup)
        mb_h = None if slope is None else slope * 3600 / 1024
        per100 = None if mb_h is None else mb_h * 100 / max(1, args.processors)
        alive = s.alive()
        balanced = left is not None and load.pushed == load.popped + left
        slope_ok = args.no_slope_check or (per100 is not None and per100 < args.max_slope)
        ok = alive and balanced and load.error_count == 0 and slope_ok
        failed |= not ok
        rss = [v for _, v in pts]
        rec = {
            "alive": alive, "jobs_pushed": load.pushed, "jobs_popped": load.popped, "jobs_left": left,
            "balanced": balanced, "scheduler_moved": load.moved, "brpop_timeouts": load.timeouts,
            "reconnects": load.reconnects, "ghost_hangups": load.ghost_hangups,
            "transactions": load.transactions, "errors": load.error_count, "first_errors": load.errors,
            "samples": len(pts), "fit_samples": n,
            "rss_first_mb": rss[0] / 1024 if rss else None, "rss_last_mb": rss[-1] / 1024 if rss else None,
            "rss_max_mb": max(rss) / 1024 if rss else None,
            "slope_mb_per_hour": mb_h, "slope_mb_per_hour_per_100_conns": per100,
            "slope_ok": slope_ok, "ok": ok,
        }
        summary["servers"][s.name] = rec
        fmt = lambda v: "n/a" if v is None else f"{v:+.2f}"  # noqa: E731
        print(f"[{s.name}] {'PASS' if ok else 'FAIL'}  alive={alive} pushed={load.pushed} "
              f"popped={load.popped} left={left} balanced={balanced} moved={load.moved} "
              f"timeouts={load.timeouts} reconnects={load.reconnects} ghosts={load.ghost_hangups} "
              f"tx={load.transactions} errors={load.error_count}")
        print(f"[{s.name}] RSS {rec['rss_first_mb'] or 0:.1f} -> {rec['rss_last_mb'] or 0:.1f} MB "
              f"(max {rec['rss_max_mb'] or 0:.1f}); slope after {args.warmup:.0%} warm-up: "
              f"{fmt(mb_h)} MB/hour, {fmt(per100)} MB/hour per 100 connections "
              f"(bound {args.max_slope} {'not checked' if args.no_slope_check else ('ok' if slope_ok else 'EXCEEDED')})")
        for e in load.errors[:5]:
            print(f"[{s.name}]   error: {e}")
    png = plot(series, args.out, args)
    summary["plot"] = png
    with open(os.path.join(args.out, "soak-summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"soak: {'FAIL' if failed else 'PASS'}; CSV/summary{' /plot' if png else ''} in {args.out}")
    for s in servers:
        rc = s.stop()
        if rc not in (None, 0):
            print(f"[{s.name}] exited with {rc} after SIGTERM")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
