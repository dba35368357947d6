"""A real `cascor serve` process on a loopback port, and plain HTTP / WebSocket clients for it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

TOKEN = "test-token-0123456789abcdef"


class Server:
    def __init__(self, runs: str, *args: str, token: str | None = TOKEN):
        self.runs, self.args, self.token = str(runs), args, token
        self.proc = None
        self.lines: list[str] = []

    def start(self, timeout: float = 60.0) -> "Server":
        cmd = [sys.executable, "-m", "cascor", "serve", "--runs", self.runs, "--port", "0", *self.args]
        cmd += ["--token", self.token] if self.token else ["--no-token"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        first = self.proc.stderr.readline()
        m = re.search(r"http://([0-9.]+):(\d+)/", first)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"cascor serve did not start: {first!r} {self.proc.stderr.read()[:2000]}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.lines.append(first)
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 120.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    # -- HTTP ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, headers=None, token: bool = True, raw: bool = False):
        """(status, parsed JSON or bytes) of one request; never raises for an HTTP error."""
        headers = dict(headers or {})
        if token and self.token:
            headers.setdefault("X-Cascor-Token", self.token)
        data = None
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            else:
                data = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                status, content = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, content = e.code, e.read()
        if raw:
            return status, content
        try:
            return status, json.loads(content) if content else None
        except ValueError:
            return status, content

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body if body is not None else {}, **kw)

    def ws(self, run_id: str, token: bool = True):
        from websockets.sync.client import connect

        query = f"?token={self.token}" if token and self.token else ""
        return connect(f"ws://{self.host}:{self.port}/api/runs/{run_id}/stream{query}", max_size=1 << 28)

    def wait_status(self, run_id: str, statuses, timeout: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, run = self.get(f"/api/runs/{run_id}")
            if status == 200 and run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {run.get('status') if status == 200 else status}; "
                                     f"server said: {''.join(self.lines)[-2000:]}")
            time.sleep(0.2)


def follow(ws, until, timeout: float = 180.0) -> list[dict]:
    """Messages from a run's stream until ``until(message)`` is true."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        out.append(message)
        if until(message):
            return out


def cascor(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True, timeout=300,
                          env=env or os.environ.copy())
