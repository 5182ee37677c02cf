"""The daemon's one HTTP listener (aiohttp): /healthz, /readyz, /metrics and the routes others mount.

Mounting a route (the Notion webhook, or anything later): `App.run` builds one `Listener`, mounts
the monitoring routes, then calls `App.mount_routes(listener, jobs)` before `start()`. Add your
route there: `listener.add_post("/notion/webhook", handler)` (or `add_get`, or
`add_route(method, path, handler)`), where `handler` is an aiohttp handler,
`async def handler(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse`. Routes must be
added before `start()` (aiohttp freezes the router then); adding one after raises RuntimeError. A
request body is limited to 1 MiB (`MAX_BODY`). With HTTP_PORT=0 there is no listener and nothing is
served, so a route must not be the only way its feature works (polling stays Notion's reconciler).
A handler that raises answers 500 with no detail (the exception is logged, never sent).
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable

from aiohttp import web

from daemon.errors import ConfigError, PortInUse
from daemon.logs import get_logger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 1024 * 1024
# At stop, requests still in flight get this long before they are cancelled (aiohttp's default is
# 60 s): the listener stops after the worker's drain, and the whole stop must stay within the worst
# stop TimeoutStopSec and drainingSeconds allow (daemon/worker.py, SETTLE_AFTER_STOP_S).
SHUTDOWN_S = 3.0


class Listener:
    """One aiohttp server on `host:port`; `setting` names the variable its port came from, for errors."""

    def __init__(self, host: str, port: int, *, setting: str = "HTTP_PORT") -> None:
        self.host = host
        self.port = port
        self.setting = setting
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[_no_detail_on_crash])
        self.runner: web.AppRunner | None = None

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        if self.runner is not None:
            raise RuntimeError(f"route {method} {path} added after the listener started; mount it before")
        self.app.router.add_route(method, path, handler)

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    @property
    def url(self) -> str:
        return url_of(self.host, self.port)

    async def start(self) -> None:
        """Listens; a port not allowed is a ConfigError, a port in use a PortInUse (it may be let go:
        a supervisor tries again), each naming the setting and the fix."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        self.runner = runner
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(self._bind_problem(exc)) from exc
            raise ConfigError(self._bind_problem(exc)) from exc
        get_logger().info("http_listening", url=self.url, host=self.host, port=self.port)

    def _bind_problem(self, exc: OSError) -> str:
        where = f"{self.host}:{self.port}"
        if exc.errno == errno.EADDRINUSE:
            return (
                f"{self.setting}: {where} is already in use by another program (another daemon on this "
                f"host? each needs its own {self.setting}); set {self.setting} to a free port, or "
                f"{self.setting}=0 for no HTTP listener"
            )
        if exc.errno == errno.EACCES:
            return (
                f"{self.setting}: not allowed to listen on {where} (ports below 1024 need privileges); "
                f"choose a port above 1024"
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"HTTP_HOST: {self.host!r} is not an address of this machine; use 127.0.0.1 or 0.0.0.0"
        return f"{self.setting}: cannot listen on {where} ({exc.strerror or exc}); set another port or host"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def url_of(host: str, port: int) -> str:
    """The listener's address as this machine reaches it (every interface: the loopback's)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


@web.middleware
async def _no_detail_on_crash(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A handler's unexpected error answers a bare 500 (aiohttp's own page may carry the message)
    and is logged once."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        get_logger().exception("http_handler_failed", path=request.path, error=type(exc).__name__)
        return web.json_response({"error": "internal error; see the daemon's log"}, status=500)
