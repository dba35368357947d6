"""``cascor train ... --monitor``: the service's page and API for the one run this process
trains, served from a thread beside the training loop (which stays in the main thread, exactly
as without a monitor: the run is bit-identical).

The monitor is the run's :class:`~cascor.service.events.EventLogger`, handing its batches to the
server's feed instead of a pipe. Pause and Stop on the page stop the loop at the next epoch
boundary (a snapshot is saved, as for Ctrl-C); nothing else can be started from it -- that is
``cascor serve``'s job, over the same directories. The server ends with the command.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

from ..errors import ConfigError
from .events import EventLogger
from .store import RUN_ID_RE

RESULT_STATUS = {"FINISHED": "finished", "KILLED": "paused", "FAILED": "failed"}


class Monitor(EventLogger):
    def __init__(self, out: str, port: int = 8765, host: str = "127.0.0.1", echo=print):
        super().__init__(fd=-1)
        self.out, self.port, self.host, self.echo = os.path.realpath(out), port, host, echo
        self.run_id = os.path.basename(self.out)
        self.token = secrets.token_urlsafe(24)
        self._stop = False
        self._server = self._thread = self._sup = None

    def preflight(self) -> None:
        from . import missing_packages

        missing = missing_packages()
        if missing:
            raise ConfigError(f"--monitor needs {', '.join(missing)}: pip install 'cascor[serve]'")
        if not RUN_ID_RE.match(self.run_id):
            raise ConfigError(f"--monitor: the run directory's name {self.run_id!r} must be letters, digits, '-' "
                              "or '_' (at most 64)")
        if self._server is None:
            self._start()

    def _start(self) -> None:
        from .app import address, allowed_hosts, create_app, listen, uvicorn_server

        sock = listen(self.host, self.port)
        port = sock.getsockname()[1]
        os.makedirs(self.out, exist_ok=True)
        guard = create_app(os.path.dirname(self.out), token=self.token, hosts=allowed_hosts(self.host, port),
                           max_runs=1, monitor=(self.run_id, self.request_stop))
        self._sup = guard.app.state.supervisor
        self._server = uvicorn_server(guard)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="cascor-monitor")
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise ConfigError("--monitor: the server did not start")
        self.echo(f"cascor monitor: {address(self.host, port, self.token)}  (this run only; it ends with the run)")

    def request_stop(self) -> None:
        self._stop = True

    def __call__(self, engine, event):
        return bool(super().__call__(engine, event)) or self._stop

    def _send(self, message: dict) -> None:
        loop, feed = self._sup.loop, self._sup.feed(self.run_id)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(feed.apply, message)

    def close(self, status="FINISHED"):
        super().close(status)
        loop = self._sup.loop if self._sup else None
        if loop is not None and not loop.is_closed():
            final = RESULT_STATUS.get(status, "paused")
            if final == "paused" and self._stop and self._sup.status_of(self.run_id) == "stopping":
                final = "stopped"
            loop.call_soon_threadsafe(self._sup.set_attached, self.run_id, final)
            time.sleep(0.3)  # let open pages receive the end
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
