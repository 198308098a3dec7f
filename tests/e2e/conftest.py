"""Fixtures for Damselfly's end-to-end tests.

* ``damselfly``          function-scoped factory: ``start(*flags) -> Server``
* ``damselfly_module``   the same factory, module-scoped (for parametrized configs)
* ``redis_server``       a real ``redis-server`` on a free port (module-scoped)

The binary comes from ``DAMSELFLY_BIN`` (default ``.build/release/damselfly``
relative to the repository root).  When it is missing the whole suite is
skipped, unless ``CI`` is set, in which case every test fails.

Isolation: every server runs in a private temporary directory of its own
(``--dir`` and its working directory; journals live in ``--dir`` too), never in
the checkout, so a ``dump.rdb`` the user keeps there is neither loaded nor
overwritten.  The directory is removed when the test passes and kept (its path
printed with the server log) when it fails.

Harness self-test: ``DAMSELFLY_BIN=tests/e2e/redis_as_damselfly.sh`` runs the
suite with a real redis-server standing in for Damselfly; checks that only make
sense for Damselfly then skip themselves (``server.is_redis``).
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from resp import RespConn  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
# Longer under a slow wrapper (valgrind: see reliability.md "Leak checker").
START_TIMEOUT_S = float(os.environ.get("DAMSELFLY_START_TIMEOUT_S", "10"))
STOP_TIMEOUT_S = float(os.environ.get("DAMSELFLY_STOP_TIMEOUT_S", "10"))


def _resolve_bin(value):
    if not value:
        return str(REPO / ".build" / "release" / "damselfly")
    if os.sep in value:
        p = pathlib.Path(value)
        return str(p if p.is_absolute() else (REPO / p))
    return shutil.which(value) or value


DAMSELFLY_BIN = _resolve_bin(os.environ.get("DAMSELFLY_BIN"))
SELFTEST_REDIS = os.path.basename(DAMSELFLY_BIN) in ("redis_as_damselfly.sh", "redis-server")
IN_CI = bool(os.environ.get("CI"))


def binary_present():
    return os.path.isfile(DAMSELFLY_BIN) and os.access(DAMSELFLY_BIN, os.X_OK)


def pytest_collection_modifyitems(config, items):
    if binary_present() or IN_CI:
        return
    skip = pytest.mark.skip(reason=f"damselfly binary not found at {DAMSELFLY_BIN} (set DAMSELFLY_BIN; CI unset)")
    here = pathlib.Path(__file__).resolve().parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(Exception):
    pass


def private_dir(parent, name):
    """A fresh directory for one server's files (snapshots, journals), under ``parent``."""
    return tempfile.mkdtemp(prefix=f"{name}-", dir=parent)


class Server:
    """One server process, started with ``cwd`` = ``workdir`` (the directory that also holds its
    files), so nothing it writes by a relative path lands in the checkout."""

    def __init__(self, name, argv, port, logdir, is_redis, workdir):
        self.name = name
        self.argv = argv
        self.port = port
        self.is_redis = is_redis
        self.workdir = str(workdir)
        self.logpath = os.path.join(logdir, f"{name}-{port}.log")
        self._log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        self.returncode = None

    def __repr__(self):
        return f"<{self.name} port={self.port} pid={self.proc.pid}>"

    def log_tail(self, n=80):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError as e:
            return f"(no log: {e})"

    def wait_ready(self, timeout=START_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode} during startup "
                                  f"({' '.join(self.argv)})\n--- log ---\n{self.log_tail()}")
            try:
                with RespConn(self.port, timeout=1.0) as c:
                    r = c.call("PING")
                # a NOAUTH error also proves the server is up (--requirepass)
                if r == ("+", b"PONG") or (r[0] == "-" and r[1].startswith(b"NOAUTH")):
                    return
                last = r
            except Exception as e:  # noqa: BLE001 - keep polling until the deadline
                last = e
            time.sleep(0.05)
        self.stop(check=False)
        raise ServerError(f"{self.name} did not answer PING within {timeout}s "
                          f"(last error: {last!r})\n--- log ---\n{self.log_tail()}")

    # clients ---------------------------------------------------------------
    def client(self, **kw):
        import redis
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def raw(self, timeout=10.0):
        return RespConn(self.port, timeout=timeout)

    def info(self, section=None):
        with self.raw() as c:
            r = c.call("INFO", section) if section else c.call("INFO")
        assert r[0] == "$", r
        return parse_info(r[1])

    # lifecycle ---------------------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def stop(self, check=True):
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    self._log.close()
                    if check:
                        raise ServerError(f"{self.name} did not exit within {STOP_TIMEOUT_S}s of SIGTERM"
                                          f"\n--- log ---\n{self.log_tail()}")
                    return
            self.returncode = self.proc.returncode
            self._log.close()
        if check and self.returncode != 0:
            raise ServerError(f"{self.name} exited with {self.returncode} after SIGTERM (expected 0)"
                              f"\n--- log ---\n{self.log_tail()}")


def parse_info(text):
    """INFO text -> {field: raw string value} (section headers dropped)."""
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k] = v
    return out


def parse_kv_list(value):
    """'a=1,b=2' -> {'a': '1', 'b': '2'}."""
    out = {}
    for part in value.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class Factory:
    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.servers = []
        self.workdirs = []

    def start(self, *flags):
        if not binary_present():
            pytest.fail(f"damselfly binary not found at {DAMSELFLY_BIN} (CI is set, so this is an error)")
        err = None
        for _attempt in range(3):  # a free port can be stolen between probe and bind
            port = free_port()
            workdir = private_dir(self.tmpdir, "damselfly")
            self.workdirs.append(workdir)
            own_dir = [] if any(f.startswith("--dir=") for f in flags) else [f"--dir={workdir}"]
            argv = [DAMSELFLY_BIN, f"--port={port}", "--bind=127.0.0.1", "--logtostdout", *own_dir, *flags]
            srv = Server("damselfly", argv, port, self.tmpdir, SELFTEST_REDIS, workdir)
            try:
                srv.wait_ready()
            except ServerError as e:
                err = e
                continue
            self.servers.append(srv)
            return srv
        raise err

    def start_redis(self, *extra):
        if not shutil.which("redis-server"):
            pytest.skip("redis-server not installed")
        return self.start_tool("redis", lambda port, workdir: [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", workdir, *extra])

    def start_tool(self, name, argv_for):
        """A Redis-family process (redis-server, redis-sentinel) on a free port:
        ``argv_for(port, workdir)`` gives its command line."""
        err = None
        for _attempt in range(3):
            port = free_port()
            workdir = private_dir(self.tmpdir, name)
            self.workdirs.append(workdir)
            srv = Server(name, argv_for(port, workdir), port, self.tmpdir, True, workdir)
            try:
                srv.wait_ready()
            except ServerError as e:
                err = e
                continue
            self.servers.append(srv)
            return srv
        raise err

    def close(self, failed=False):
        errors = []
        for s in self.servers:
            try:
                s.stop(check=True)
            except ServerError as e:
                errors.append(str(e))
            if failed:
                sys.stderr.write(f"\n--- {s!r} log (test failed; files kept in {s.workdir}) ---\n{s.log_tail()}\n")
        self.servers = []
        if not failed and not errors:
            for d in self.workdirs:
                shutil.rmtree(d, ignore_errors=True)
        self.workdirs = []
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


def _failed(node):
    rep = getattr(node, "rep_call", None)
    return bool(rep and rep.failed)


@pytest.fixture
def damselfly(request, tmp_path):
    f = Factory(str(tmp_path))
    yield f.start
    f.close(failed=_failed(request.node))


@pytest.fixture(scope="module")
def damselfly_module(request, tmp_path_factory):
    failed_before = request.session.testsfailed
    f = Factory(str(tmp_path_factory.mktemp("damselfly")))
    yield f.start
    f.close(failed=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def factory_module(request, tmp_path_factory):
    """A module's own Factory, for tests that start several servers of both kinds."""
    failed_before = request.session.testsfailed
    f = Factory(str(tmp_path_factory.mktemp("servers")))
    yield f
    f.close(failed=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def redis_server(request, tmp_path_factory):
    failed_before = request.session.testsfailed
    f = Factory(str(tmp_path_factory.mktemp("redis")))
    srv = f.start_redis()
    yield srv
    f.close(failed=request.session.testsfailed > failed_before)


@pytest.fixture
def only_damselfly():
    """Skip a Damselfly-specific check when the harness runs against redis-server."""
    if SELFTEST_REDIS:
        pytest.skip("Damselfly-specific check (harness self-test against redis-server)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer-running e2e tests")
