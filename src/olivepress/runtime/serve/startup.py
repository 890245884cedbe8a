"""Server start-up: refuse an open bind without an API key, check the port before the model
loads, run uvicorn until SIGINT/SIGTERM and let in-flight requests finish."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from olivepress.errors import OlivepressError
from olivepress.runtime.serve.dispatch import Server
from olivepress.runtime.serve.routes import create_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_server(server: Server, host: str = "127.0.0.1", port: int = 8000, *, shutdown_timeout: float = 30.0):
    """A uvicorn server for `server`; run() serves until SIGINT/SIGTERM or `should_exit`, and lets
    in-flight requests finish (up to `shutdown_timeout` s) before it returns."""
    import uvicorn

    if not is_loopback(host) and not server.api_key:
        raise OlivepressError(
            f"binding {host} makes the server reachable from other machines; set an API key with --api_key "
            "(or OLIVEPRESS_API_KEY), or bind 127.0.0.1"
        )
    config = uvicorn.Config(
        create_app(server),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=shutdown_timeout,
        access_log=False,
    )
    return uvicorn.Server(config)


def bound_port(http) -> int:
    """The port a started uvicorn server listens on (the real one when asked for port 0)."""
    return http.servers[0].sockets[0].getsockname()[1]


def check_port(host: str, port: int) -> None:
    """Fail with one line, before uvicorn logs its own complaint, when the port is taken."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OlivepressError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
            ) from None


def serve(
    server: Server,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    shutdown_timeout: float = 30.0,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish before it returns."""
    http = http_server(server, host, port, shutdown_timeout=shutdown_timeout)
    check_port(host, port)
    if on_ready is not None:
        startup = http.startup

        async def startup_then_report(sockets=None):
            # uvicorn has no "started" callback; its startup returns once the socket listens.
            await startup(sockets=sockets)
            if http.started:
                on_ready(bound_port(http))

        http.startup = startup_then_report
    try:
        http.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        pass
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once in-flight requests are done: a clean stop
        pass
    finally:
        server.close()
    if not http.started:
        raise OlivepressError(
            f"could not listen on {host}:{port} (is the port in use?); choose another with --port"
        )
