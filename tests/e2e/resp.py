"""A tiny RESP2/RESP3 client for byte-exact comparisons.

Replies are returned as tagged tuples so that two servers' answers can be
compared exactly, including the reply *type* (simple string vs bulk string,
RESP3 null vs RESP2 nil, map vs array, ...):

    ('+', b'OK')            simple string
    ('-', b'ERR ...')       error
    (':', 42)               integer
    ('$', b'...' | None)    bulk string (None = RESP2 nil bulk)
    ('*', [...] | None)     array (None = RESP2 nil array)
    ('%', [(k, v), ...])    RESP3 map (pairs, in wire order)
    ('~', [...])            RESP3 set
    ('>', [...])            RESP3 push
    ('_', None)             RESP3 null
    ('#', True|False)       RESP3 boolean
    (',', b'1.5')           RESP3 double (raw text)
    ('(', 123)              RESP3 big number
    ('=', b'txt:...')       RESP3 verbatim string
    ('!', b'ERR ...')       RESP3 blob error
"""

import socket
import time


class ConnectionClosed(Exception):
    pass


class ProtocolMismatch(Exception):
    pass


def encode(*args):
    """Encode a command as a RESP multibulk frame."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        elif isinstance(a, float):
            a = repr(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespConn:
    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        assert host == "127.0.0.1", "tests only ever connect to 127.0.0.1"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    # -- low level ---------------------------------------------------------
    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed()
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read_reply(self):
        line = self._line()
        if not line:
            raise ProtocolMismatch("empty reply line")
        t, rest = chr(line[0]), line[1:]
        if t in "+-":
            return (t, rest)
        if t == ":":
            return (t, int(rest))
        if t in "$!=":
            n = int(rest)
            if n < 0:
                return (t, None)
            return (t, self._exact(n))
        if t in "*~>":
            n = int(rest)
            if n < 0:
                return (t, None)
            return (t, [self.read_reply() for _ in range(n)])
        if t == "%":
            n = int(rest)
            return (t, [(self.read_reply(), self.read_reply()) for _ in range(n)])
        if t == "|":  # attribute: read and ignore, then return the real reply
            n = int(rest)
            for _ in range(2 * n):
                self.read_reply()
            return self.read_reply()
        if t == "_":
            return (t, None)
        if t == "#":
            return (t, rest == b"t")
        if t == ",":
            return (t, rest)
        if t == "(":
            return (t, int(rest))
        raise ProtocolMismatch("unknown reply type %r in %r" % (t, line))

    # -- high level --------------------------------------------------------
    def call(self, *args):
        self.send_raw(encode(*args))
        return self.read_reply()

    def pipeline(self, cmds):
        self.send_raw(b"".join(encode(*c) for c in cmds))
        return [self.read_reply() for _ in cmds]

    def read_all_until_close(self, timeout=2.0):
        """Read raw bytes until the peer closes (returns (data, closed))."""
        data = self.buf
        self.buf = b""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.1)
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    return data, True
                if not chunk:
                    return data, True
                data += chunk
            return data, False
        finally:
            self.sock.settimeout(10.0)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def to_py(reply):
    """Strip the type tags: handy for assertions that don't care about types."""
    t, v = reply
    if t in "*~>" and v is not None:
        return [to_py(x) for x in v]
    if t == "%":
        return {to_py(k): to_py(x) for k, x in v}
    return v


def is_error(reply):
    return reply[0] in "-!"
