"""`mirsearch serve`: the site on gunicorn, a worker process per core.

Each worker builds its own app and Engine and loads the model and the index before it takes a
request, so the first upload is answered as fast as the rest. The workers share nothing but the
catalog database and the index files, which `mirsearch index` may change under them: each moves
on to a new index generation by itself (Engine.index). A worker runs `threads` requests at once
(they share one interpreter); the network gets the worker's share of the cores.
"""

from __future__ import annotations

import json
import os
import sys

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.util import write_nonblock
from gunicorn.workers.gthread import ThreadWorker

from mirsearch.config import Settings
from mirsearch.errors import IndexMismatchError, MirsearchError
from web import SECURITY_HEADERS, create_app

# The longest request line (method, URL, version) gunicorn will read, its own largest but for
# none at all (past its default, 4,094, a long listing URL had got an HTML page of its own)
REQUEST_LINE_BYTES = 8190


class Worker(ThreadWorker):
    """gunicorn's threaded worker, which answers a request line or headers too long to read as
    the app answers its errors: JSON with the site's security headers, not an HTML page of
    gunicorn's own (the path is not known then, so a page's URL gets the JSON too)."""

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, LimitRequestLine):
            status, reason, code = 414, "URI Too Long", "uri_too_long"
            message = (
                f"the request line is over {self.cfg.limit_request_line:,} bytes: ask with "
                "fewer or shorter parameters"
            )
        elif isinstance(exc, LimitRequestHeaders):
            status, reason, code = 431, "Request Header Fields Too Large", "headers_too_large"
            message = (
                f"the request's headers are over the limit ({self.cfg.limit_request_fields} "
                f"headers of at most {self.cfg.limit_request_field_size:,} bytes each): {exc}"
            )
        else:
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        head = [
            f"HTTP/1.1 {status} {reason}",
            "Connection: close",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
        ]
        try:
            write_nonblock(client, "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        except OSError:
            self.log.debug("Failed to send error message.")


class Server(BaseApplication):
    """gunicorn with its settings from here, not from the command line or a config file."""

    def __init__(self, settings: Settings, *, host: str, port: int, workers: int):
        self.settings = settings
        self.options = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": Worker,
            "limit_request_line": REQUEST_LINE_BYTES,
            "threads": settings.server.threads,
            "timeout": settings.server.timeout_s,
            "graceful_timeout": 10,
            "control_socket_disable": True,  # no socket in $HOME for two servers to fight over
            "loglevel": "warning",  # gunicorn's own start-up lines: "serving on" says it
            "when_ready": self.ready,
        }
        self.network_threads = max(1, (os.cpu_count() or 1) // workers)
        super().__init__()

    def ready(self, arbiter: Arbiter) -> None:
        """Said once the address is bound, before the workers start: not when it could not be."""
        workers = f"{arbiter.num_workers} worker process{'' if arbiter.num_workers == 1 else 'es'}"
        print(f"serving on http://{arbiter.cfg.bind[0]} ({workers})", file=sys.stderr, flush=True)

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        """In each worker: the app, its model and index loaded. A model this code cannot read is
        said in one line and stops the server, not restarted worker after worker; an index made
        by another model is said too, and the site goes on (the catalog pages need no index,
        and searches answer with the same message, as `mirsearch search` does)."""
        try:
            app = create_app({"SETTINGS": self.settings}, threads=self.network_threads)
            app.extensions["mirsearch"].load()
        except IndexMismatchError as exc:
            print(f"Warning: {exc}", file=sys.stderr, flush=True)
        except MirsearchError as exc:
            print(f"Error: {exc}", file=sys.stderr, flush=True)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        return app


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve until stopped (SIGINT or SIGTERM); MirsearchError when it could not start: the
    address taken or not this machine's, or no worker able to load the model (gunicorn says
    why above, then exits, with its own status, 3 for a worker that failed to boot)."""
    master = os.getpid()
    try:
        Server(settings, host=host, port=port, workers=workers).run()
    except SystemExit as exc:
        if os.getpid() != master or exc.code in (0, None):  # a worker's own exit, or a stop
            raise
        if exc.code in (Arbiter.WORKER_BOOT_ERROR, Arbiter.APP_LOAD_ERROR):
            raise MirsearchError("the server stopped: no worker could start") from None
        raise MirsearchError(f"cannot serve on {host}:{port}: see the reason above") from None
