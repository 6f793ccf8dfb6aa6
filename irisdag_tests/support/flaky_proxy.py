"""A TCP proxy to a real Redis that can drop every connection, for testing transient faults.

``FlakyProxy(port)`` forwards 127.0.0.1:<proxy.port> to 127.0.0.1:<port>.
``break_after_pong()`` arms it: once it has relayed a PONG (a resource's
start-up ping), it closes every connection and every new one until ``heal()``.
The client sees real socket errors, as when Redis restarts or the network drops.
``break_now()`` drops every connection at once (until ``heal()``). ``hold()`` stops
relaying bytes, both ways, without closing anything (a stalled link: a replica
behind it stays connected but receives nothing) until ``release()``.
"""
from __future__ import annotations

import socket
import threading


class FlakyProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.broken = threading.Event()
        self.armed = threading.Event()
        self.flowing = threading.Event()
        self.flowing.set()
        self.dropped = 0
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def break_after_pong(self) -> None:
        self.armed.set()

    def heal(self) -> None:
        self.broken.clear()

    def break_now(self) -> None:
        self.broken.set()
        self._drop_all()

    def hold(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            for s in list(self._sockets):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._sockets.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.broken.is_set():
                self.dropped += 1
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.broken.is_set():
                    break
                self.flowing.wait()
                dst.sendall(data)
                if from_server and self.armed.is_set() and b"+PONG\r\n" in data:
                    self.armed.clear()
                    self.broken.set()
                    self.dropped += 1
                    self._drop_all()
                    return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
