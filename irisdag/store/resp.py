"""Redis' wire protocol (RESP2, and the RESP3 replies a server may send) over a socket,
without redis-py: commands packed as arrays of bulk strings, replies read straight off
the socket. `resource` reads its pipelined replies with `ReplyReader` (redis-py's parser
costs several microseconds a reply); `consumer` talks to Redis with `Connection` alone
(importing redis-py takes longer than a whole lookup).
"""
from __future__ import annotations

import re
import socket


class ReplyError(Exception):
    """An error reply (``-ERR ...``, ``-NOSCRIPT ...``); ``code`` is its first word."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]

    @property
    def text(self) -> str:
        """The message without its code, as redis-py shows it (``WRONGPASS invalid ...`` -> ``invalid ...``)."""
        head, _, rest = str(self).partition(" ")
        return rest if head.isupper() and rest else str(self)


def bulk(arg) -> bytes:
    """One argument as a RESP bulk string (str as UTF-8, numbers as their text)."""
    b = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
    return b"$%d\r\n%s\r\n" % (len(b), b)


def pack(*args) -> bytes:
    """One command as RESP."""
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


# One entry of the lookup reply: *3, then three bulk strings or nulls (RESP2 $-1, RESP3 _).
_TRIPLE = re.compile(rb"\*3\r\n" + rb"(?:\$\d+\r\n([^\r\n]*)|\$-1|_)\r\n" * 3)


class ReplyReader:
    """RESP2/RESP3 replies from a socket: integers, bulk and simple strings, nulls, booleans,
    errors (returned, not raised) and arrays of those.

    Subclasses choose the exceptions: ``timeout_error`` and ``connection_error`` are
    raised, ``error_reply(message)`` is returned for an error reply, ``protocol_error``
    raised for a reply of no known type.
    """

    __slots__ = ("sock", "buf", "pos")
    timeout_error: type[Exception] = TimeoutError
    connection_error: type[Exception] = ConnectionError
    protocol_error: type[Exception] = ValueError
    error_reply = ReplyError

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def _fill(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError as err:  # socket.timeout
            raise self.timeout_error(f"timeout reading from Redis: {err}") from err
        except OSError as err:
            raise self.connection_error(f"error reading from Redis: {err}") from err
        if not data:
            raise self.connection_error("Redis closed the connection")
        self.buf = self.buf[self.pos:] + data if self.pos < len(self.buf) else data
        self.pos = 0

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos:i]
                self.pos = i + 2
                return line
            self._fill()

    def read(self):
        line = self._line()
        kind = line[:1]
        if kind == b":":
            return int(line[1:])
        if kind == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            value = self.buf[self.pos:self.pos + n]
            self.pos += n + 2
            return value
        if kind == b"*" or kind == b"~":
            n = int(line[1:])
            return None if n < 0 else [self.read() for _ in range(n)]
        if kind == b"%":  # RESP3 map: flat [field, value, ...], as RESP2 sends a hash
            return [self.read() for _ in range(2 * int(line[1:]))]
        if kind == b"_":
            return None
        if kind == b"+":
            return line[1:]
        if kind == b"#":
            return line[1:] == b"t"
        if kind == b"-":
            return self.error_reply(line[1:].decode("utf-8", "replace"))
        raise self.protocol_error(f"unexpected reply from Redis: {line[:40]!r}")

    def read_triples(self):
        """An array of 3-item arrays of short strings or nulls (the Lua ``lookup``'s reply).

        One compiled regex per entry instead of a call per element; an entry of
        another shape, or cut by the end of what has arrived, goes through
        `read`. Values are route names, version ids and labels: never CR or LF.
        """
        line = self._line()
        if line[:1] != b"*":
            self.pos -= len(line) + 2
            return self.read()
        n = int(line[1:])
        if n < 0:
            return None
        out = []
        match = _TRIPLE.match
        while len(out) < n:
            m = match(self.buf, self.pos)
            if m is None:
                out.append(self.read())
                continue
            out.append(m.groups())
            self.pos = m.end()
        return out

    def drained(self) -> bool:
        return self.pos >= len(self.buf)


class Connection:
    """One socket to Redis: commands sent together (a pipeline), their replies read in order."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = ReplyReader(sock)

    @classmethod
    def tcp(cls, host: str, port: int, *, connect_timeout: float, timeout: float,
            tls: bool = False) -> "Connection":
        """Connect to host:port (TLS with the system's trust store and a hostname check when asked)."""
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                import ssl  # only for rediss://

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @classmethod
    def unix(cls, path: str, *, connect_timeout: float, timeout: float) -> "Connection":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def send(self, commands: list[tuple]) -> None:
        """Send the commands in one write (their replies are read by `read`)."""
        try:
            self.sock.sendall(b"".join(pack(*c) for c in commands))
        except TimeoutError as err:
            raise TimeoutError(f"timeout writing to Redis: {err}") from err
        except OSError as err:
            raise ConnectionError(f"error writing to Redis: {err}") from err

    def read(self, n: int) -> list:
        """The next ``n`` replies, in order (errors as `ReplyError`)."""
        return [self.reader.read() for _ in range(n)]

    def call_many(self, commands: list[tuple]) -> list:
        """Send the commands in one write, then read one reply each (errors as `ReplyError`)."""
        self.send(commands)
        return self.read(len(commands))

    def call(self, *args):
        return self.call_many([args])[0]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
