"""The HTTP and WebSocket API (FastAPI) and the page, over a :class:`RunStore` and a
:class:`Supervisor`. ``create_app`` builds it; ``cascor serve`` runs it with uvicorn.

Security, all in :class:`Guard` (plain ASGI, so it covers the WebSocket and SSE streams too):
every request needs the token (``Authorization: Bearer``, ``X-Cascor-Token``, ``?token=`` or the
cookie the page gets when opened with ``?token=``); the Host header must name the server (a
DNS-rebinding page cannot talk to it); a request with an Origin from elsewhere is refused (no
CORS: another site's script cannot read or change anything). Bodies are read up to
``max_upload`` bytes. Errors are JSON ``{"error": "<the CLI's one-line message>"}``.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import shutil
import time
from importlib import resources
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from ..errors import CascorError
from . import actions
from .events import json_safe
from .hub import dumps
from .store import LIVE, RunStore, ServiceError
from .supervisor import Supervisor

COOKIE = "cascor_token"
STATIC = ("app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css", "LICENSE.uPlot.txt")
MAX_UPLOAD = 64 << 20
# an oversized body up to this much over the limit is read (and dropped) before the 413, so an
# ordinary client sees the message instead of a broken pipe; a larger one is cut off
DRAIN_LIMIT = 16 << 20


class Guard:
    """Token, Host and Origin checks in front of every route, stream and file."""

    def __init__(self, app, token: str | None, hosts: set[str] | None):
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        reason = None
        if self.hosts is not None and host.lower() not in self.hosts:
            reason = (421, f"this server does not answer for host {host!r}")
        elif "origin" in headers and urlsplit(headers["origin"]).netloc.lower() != host.lower():
            reason = (403, "cross-origin requests are refused")
        elif self.token is not None and not self._token_ok(scope, headers):
            reason = (401, "a token is required: open the address `cascor serve` printed (it ends in ?token=...)")
        if reason is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": reason[1][:120]})
            return None
        await JSONResponse({"error": reason[1]}, status_code=reason[0])(scope, receive, send)
        return None

    def _token_ok(self, scope, headers) -> bool:
        given = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        given.append(headers.get("x-cascor-token", ""))
        given += parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        for part in headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == COOKIE:
                given.append(value)
        return any(hmac.compare_digest(g.encode(), self.token.encode()) for g in given if g)


class NewRun(BaseModel):
    """A new run: a built-in dataset or an upload, and the settings of ``cascor train``."""

    model_config = ConfigDict(extra="forbid")
    dataset: str | None = Field(None, description="a built-in dataset (see /api/info)")
    upload: str | None = Field(None, description="the id POST /api/uploads returned")
    target: str | None = Field(None, description="CSV target column of the upload")
    preset: str = "default"
    seed: int | None = Field(None, ge=0)
    config: dict[str, str | int | float | bool | list[str] | list[float]] = Field(default_factory=dict,
                                                                                 description="config fields")
    validation_fraction: float | None = Field(None, ge=0.0, le=0.9)
    early_stopping: bool | None = None
    n_iter_no_change: int | None = Field(None, ge=1)
    scale_inputs: bool | None = Field(None, description="standardise the input columns (default: for uploads)")
    checkpoint_every: int = Field(0, ge=0)
    keep_last: int = Field(0, ge=0)
    backend: Literal["local", "processes", "auto"] = "local"
    name: str | None = Field(None, max_length=40, description="a hint for the run id")
    start: bool = True


class Data(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upload: str = Field(description="the id POST /api/uploads returned")
    target: str | None = None


class Branch(BaseModel):
    model_config = ConfigDict(extra="allow")  # refused fields are named in the error
    snapshot: str
    max_units: int | None = Field(None, ge=0)
    checkpoint_every: int | None = Field(None, ge=0)
    keep_last: int | None = Field(None, ge=0)
    start: bool = True


def create_app(runs: str, *, token: str | None, hosts: set[str] | None = None, max_runs: int = 2,
               max_upload: int = MAX_UPLOAD, monitor: tuple[str, object] | None = None) -> Guard:
    """``monitor``: (run id, stop callable) of the one run the calling process trains
    (``cascor train --monitor``): the server shows only it and starts nothing."""
    store = RunStore(runs, only=monitor[0] if monitor else None)
    sup = Supervisor(store, max_runs=max_runs)
    if monitor:
        sup.attach(*monitor)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        if monitor is None:
            await asyncio.to_thread(actions.sweep_uploads, store)
        await sup.startup()
        yield
        await sup.shutdown()

    app = FastAPI(title="cascor", version=__version__, lifespan=lifespan,
                  description="Cascade-Correlation training runs: create, watch, pause, resume, branch, download.")
    app.state.store, app.state.supervisor = store, sup

    @app.exception_handler(CascorError)
    async def cascor_error(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=422)

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload:
            if int(declared) <= max_upload + DRAIN_LIMIT:
                async for _ in request.stream():  # read and drop it, so the client hears why
                    pass
            raise ServiceError(f"upload too large: {int(declared)} bytes (the limit is {max_upload})", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_upload:
                raise ServiceError(f"upload too large: over {max_upload} bytes", 413)
            chunks.append(chunk)
        if not size:
            raise ServiceError("the request body is empty: send the file as the body")
        return b"".join(chunks)

    def blocking(fn, *args):
        return asyncio.to_thread(fn, *args)

    async def new_run(hint: str, prepare, status: str = "paused") -> str:
        """A new run directory, filled by ``prepare(run_id)`` (in a thread; it returns the record's
        spec and parent) and recorded; removed again if anything fails on the way."""
        run_id = store.new_id(hint)
        try:
            prepared = await blocking(prepare, run_id)
            store.write(run_id, {**prepared, "status": status, "created": time.time(), "error": None})
        except BaseException:
            shutil.rmtree(store.path(run_id), ignore_errors=True)
            raise
        return run_id

    # -- page --------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page(request: Request):
        html = resources.files("cascor.service").joinpath("static/index.html").read_text()
        response = HTMLResponse(html)
        token = request.query_params.get("token")
        if token:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in STATIC:
            raise ServiceError(f"no file {name!r}", 404)
        path = resources.files("cascor.service").joinpath("static", name)
        media = {"js": "text/javascript", "css": "text/css", "txt": "text/plain"}[name.rsplit(".", 1)[1]]
        return Response(path.read_bytes(), media_type=media)

    # -- runs --------------------------------------------------------------------------------
    @app.get("/api/info")
    async def info():
        from .. import config as cfgmod
        from ..datasets import DATASET_NAMES

        return {"version": __version__, "datasets": list(DATASET_NAMES), "presets": list(cfgmod.PRESETS),
                "max_runs": sup.max_runs, "max_upload": max_upload}

    def listing(run_id: str) -> dict:
        record = store.read(run_id)
        feed = sup.feeds.get(run_id)
        live = feed.info if feed is not None and sup.is_live(run_id) else {}
        return {"id": run_id, "status": sup.status_of(run_id) or record.get("status"), "error": record.get("error"),
                "created": record.get("created"), "spec": record.get("spec"), "parent": record.get("parent"),
                "summary": record.get("summary"), "live": live, "queue_position":
                    sup.queue.index(run_id) + 1 if run_id in sup.queue else None}

    @app.get("/api/runs")
    async def list_runs():
        return json_safe({"runs": [listing(r) for r in store.ids()]})

    @app.post("/api/uploads", status_code=201)
    async def upload(request: Request, filename: str = Query("data.csv", max_length=200)):
        """A CSV or NPZ training file for a new run (the body is the file)."""
        return await blocking(actions.save_upload, store, await body(request), filename)

    @app.post("/api/runs", status_code=201)
    async def create_run(spec: NewRun):
        if (spec.dataset is None) == (spec.upload is None):
            raise ServiceError("give exactly one of dataset or upload")
        settings = spec.model_dump(exclude={"config", "name", "start", "upload"})
        settings["sets"] = actions.config_sets(spec.config)
        await blocking(actions.check_spec, settings)

        def prepare(run_id):
            if spec.upload is not None:
                settings["data"] = actions.take_upload(store, spec.upload, run_id)
            return {"spec": settings, "parent": None}

        run_id = await new_run(spec.name or spec.dataset or "upload", prepare,
                               "paused" if not spec.start else "queued")
        if spec.start:
            await sup.submit(run_id)
        return listing(run_id)

    def live_view(run_id: str) -> dict | None:
        """A running run's state and history as its feed holds them now (no await inside: a
        stream subscribes and takes this in one step, so no batch is both in it and queued)."""
        feed = sup.feeds.get(run_id)
        if not sup.is_live(run_id) or feed is None or feed.history is None:
            return None
        out = listing(run_id)
        out["history"] = json_safe(feed.history)  # (a copy)
        return out

    async def run_view(run_id: str) -> dict:
        out = live_view(run_id)
        if out is None:
            out = listing(run_id)
            saved = await blocking(store.history, run_id)
            out["history"] = None if saved is None else saved.pop("history")
            out["saved"] = saved
        out["snapshots"] = store.snapshots(run_id)
        return json_safe(out)

    @app.get("/api/runs/{run_id}")
    async def get_run(run_id: str):
        return await run_view(run_id)

    @app.post("/api/runs/{run_id}/pause")
    async def pause(run_id: str):
        store.path(run_id)
        await sup.pause(run_id, "pause")
        return listing(run_id)

    @app.post("/api/runs/{run_id}/stop")
    async def stop(run_id: str):
        store.path(run_id)
        await sup.pause(run_id, "stop")
        return listing(run_id)

    @app.post("/api/runs/{run_id}/resume")
    async def resume(run_id: str):
        record = store.read(run_id)
        if record.get("status") == "finished":
            raise ServiceError(f"run {run_id} is finished; branch it to grow further", 409)
        await sup.submit(run_id)
        return listing(run_id)

    @app.get("/api/runs/{run_id}/snapshots")
    async def snapshots(run_id: str):
        return {"snapshots": store.snapshots(run_id)}

    @app.get("/api/runs/{run_id}/snapshots/{name}")
    async def download(run_id: str, name: str):
        path = store.snapshot_path(run_id, name)
        return FileResponse(path, media_type="application/x-hdf5", filename=f"{run_id}-{name}")

    @app.post("/api/runs/{run_id}/data")
    async def attach_data(run_id: str, request: Data):
        """Give a run its training data file (an imported snapshot that records a file: the
        recorded path is a stranger's and is never read). The run's snapshots check that it is
        the data they were trained on when it resumes."""
        store.path(run_id)
        if sup.is_live(run_id) or run_id in sup.queue:
            raise ServiceError(f"run {run_id} is {store.read(run_id)['status']}: pause it first", 409)
        name = await blocking(actions.take_upload, store, request.upload, run_id)
        record = store.read(run_id)
        spec = {k: v for k, v in (record.get("spec") or {}).items() if k != "dataset"}
        spec.update(data=name, target=request.target)
        store.update(run_id, spec=spec)
        return listing(run_id)

    @app.post("/api/runs/{run_id}/branch", status_code=201)
    async def branch(run_id: str, request: Branch):
        store.path(run_id)
        changes = {k: v for k, v in request.model_dump().items() if k not in ("snapshot", "start")}
        changes = {k: v for k, v in changes.items() if v is not None}
        new_id = await new_run(f"branch-{run_id}", lambda rid: actions.prepare_branch(
            store, run_id, request.snapshot, rid, changes))
        if request.start:
            await sup.submit(new_id)
        return listing(new_id)

    @app.post("/api/snapshots", status_code=201)
    async def import_snapshot(request: Request):
        """A snapshot file (the body) becomes a paused run, if the safe reader accepts it."""
        data = await body(request)
        return listing(await new_run("imported", lambda rid: actions.import_snapshot(store, data, rid)))

    @app.get("/api/runs/{run_id}/boundary")
    async def boundary(run_id: str, size: int = Query(64, ge=8, le=200)):
        return json_safe(await blocking(actions.boundary, store, run_id, size))

    @app.post("/api/runs/{run_id}/evaluate")
    async def evaluate(run_id: str, request: Request, filename: str = Query("data.csv", max_length=200),
                       target: str | None = None):
        """Scores on the uploaded CSV/NPZ (the body), of the network the run would predict with."""
        return json_safe(await blocking(actions.evaluate, store, run_id, await body(request), filename, target))

    @app.post("/api/runs/{run_id}/predict")
    async def predict(run_id: str, request: Request, filename: str = Query("rows.csv", max_length=200)):
        """Predictions for the uploaded rows (CSV of inputs only, or NPZ with X)."""
        return await blocking(actions.predict, store, run_id, await body(request), filename)

    @app.delete("/api/runs/{run_id}")
    async def delete(run_id: str, confirm: str = Query("", description="the run id again")):
        directory = store.path(run_id)
        if confirm != run_id:
            raise ServiceError(f"deleting run {run_id} needs ?confirm={run_id}")
        if sup.is_live(run_id) or run_id in sup.queue or store.read(run_id).get("status") in LIVE:
            raise ServiceError(f"run {run_id} is {store.read(run_id)['status']}: stop it first", 409)
        await blocking(shutil.rmtree, directory)
        sup.feeds.pop(run_id, None)
        return {"deleted": run_id}

    # -- streams -----------------------------------------------------------------------------
    async def subscribe(run_id: str):
        """(subscriber, first message): the run's state and history so far, then live batches."""
        feed = sup.feed(run_id)
        sub = feed.subscribe()
        live = live_view(run_id)  # same step as subscribe()
        if live is not None:
            live["snapshots"] = store.snapshots(run_id)
            first = live
        else:
            first = await run_view(run_id)  # nothing live: the newest snapshot's history
        return feed, sub, {"type": "history", "run": run_id, **first}

    @app.websocket("/api/runs/{run_id}/stream")
    async def stream(ws: WebSocket, run_id: str):
        try:
            store.path(run_id)
        except CascorError as exc:
            await ws.close(code=1008, reason=str(exc)[:120])
            return
        await ws.accept()
        feed, sub, first = await subscribe(run_id)
        try:
            await ws.send_text(dumps(first))
            closed = asyncio.create_task(ws.receive())
            while True:
                getter = asyncio.create_task(sub.get())
                done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    getter.cancel()
                    break
                for message in getter.result():
                    await ws.send_text(dumps(message))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            feed.unsubscribe(sub)

    @app.get("/api/runs/{run_id}/events")
    async def events(run_id: str, request: Request):
        """The same stream as Server-Sent Events."""
        store.path(run_id)
        feed, sub, first = await subscribe(run_id)

        async def gen():
            try:
                yield f"data: {dumps(first)}\n\n"
                while not await request.is_disconnected():
                    try:
                        messages = await asyncio.wait_for(sub.get(), 5.0)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    for message in messages:
                        yield f"data: {dumps(message)}\n\n"
            finally:
                feed.unsubscribe(sub)

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Guard(app, token, hosts)


def allowed_hosts(host: str, port: int) -> set[str] | None:
    """Host headers the server answers: its own address and, on loopback, localhost's names.
    None (any) when it listens on every address (the token still guards it)."""
    if host in ("0.0.0.0", "::", ""):
        return None
    names = {host, f"[{host}]" if ":" in host else host}
    if host in ("127.0.0.1", "::1", "localhost"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return {n.lower() for n in names} | {f"{n}:{port}".lower() for n in names}


SERVE_LOCK = ".cascor-serve.lock"


def claim_runs(runs: str) -> int:
    """Lock the runs directory for this server (an open descriptor with an exclusive flock): two
    servers over one directory would each take the other's running runs for interrupted ones."""
    import fcntl

    os.makedirs(runs, exist_ok=True)
    path = os.path.join(runs, SERVE_LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise ServiceError(f"another cascor serve (pid {holder or '?'}) serves {os.path.realpath(runs)}; "
                           "stop it or pass another --runs") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def listen(host: str, port: int):
    """A listening socket (port 0: one the OS picks; connections wait in its backlog from now on)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def address(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def uvicorn_server(app):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws_max_size=1 << 20))


def serve(runs: str, host: str, port: int, token: str | None, max_runs: int, max_upload: int = MAX_UPLOAD,
          echo=print) -> None:
    """Run the service until SIGINT/SIGTERM (workers are asked to stop and save first)."""
    import signal

    lock = claim_runs(runs)  # noqa: F841 -- held (open) while the server runs
    sock = listen(host, port)
    port = sock.getsockname()[1]
    app = create_app(runs, token=token, hosts=allowed_hosts(host, port), max_runs=max_runs, max_upload=max_upload)
    echo(f"cascor serve: {address(host, port, token)}  (runs: {os.path.realpath(runs)}; Ctrl-C stops it)")
    # uvicorn handles SIGINT/SIGTERM (stop serving, then the lifespan's shutdown: workers save
    # and exit), then raises the signal again under the handlers it found -- these: a Ctrl-C
    # ends with exit 0, not a KeyboardInterrupt traceback.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn_server(app).run(sockets=[sock])
