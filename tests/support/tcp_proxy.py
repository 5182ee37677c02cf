"""A TCP proxy in front of PostgreSQL for outage tests: pass traffic, cut it (every connection reset,
new ones refused: a server or network gone) or freeze it (connections accepted and held, bytes not
moved: a network that drops packets, a frozen host)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.mode = "pass"  # pass | cut | freeze
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def url(self, database: str, user: str = "root") -> str:
        return f"postgresql+asyncpg://{user}@127.0.0.1:{self.port}/{database}"

    # Control -----------------------------------------------------------------------------------------
    def cut(self) -> None:
        """Every connection reset now; new ones closed as they come."""
        with self.lock:
            self.mode = "cut"
            for sock in list(self.sockets):
                _reset(sock)
            self.sockets.clear()

    def freeze(self) -> None:
        """Connections stay open and new ones are accepted, but no byte goes through."""
        with self.lock:
            self.mode = "freeze"

    def restore(self) -> None:
        with self.lock:
            self.mode = "pass"

    def close(self) -> None:
        self.closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self.listener.close()

    # Pumps -------------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        while self.mode == "freeze" and not self.closed:
            time.sleep(0.05)  # held: the client waits as on a dead network
        if self.mode == "cut" or self.closed:
            _reset(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        with self.lock:
            self.sockets |= {client, server}
        for src, dst in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.mode == "freeze" and not self.closed:
                    time.sleep(0.05)
                if self.mode == "cut":
                    break
                dst.sendall(data)
        except OSError:  # either side reset (or the proxy cut it): this pump's connection is over
            return
        finally:
            with self.lock:
                self.sockets.discard(src)
                self.sockets.discard(dst)
            _reset(src)
            _reset(dst)


def _reset(sock: socket.socket) -> None:
    """Closes with a reset (linger 0). Shut down first: a pump blocked in recv() on this socket in
    another thread wakes up, rather than go on reading whatever socket next gets the descriptor."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
