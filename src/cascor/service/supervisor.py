"""Worker processes: every run trains in its own ``cascor train`` / ``cascor resume`` process
(the same code path as the command line, never the server's event loop), started with a pipe
for its history (:mod:`cascor.service.events`) and at most ``max_runs`` at a time; the rest wait
in a queue, in the order they were asked for.

Pause and stop are SIGTERM: the worker finishes its epoch, saves a snapshot and exits 0 (the
CLI's own Ctrl-C path), so a paused run resumes bit-exactly in a new process. The difference
is only what the service records (a stopped run is not resumed by "resume all", and says it was
stopped). A worker that exits with an error is recorded as failed with the one-line message the
CLI printed. When the server stops, running workers are asked to stop the same way and are
recorded as interrupted; a server that died without that (kill -9) leaves records that say
running, which the next server start turns into interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

from .hub import RunFeed
from .store import LIVE, RunStore, ServiceError

WORKER_LOG = "worker.log"
STREAM_LIMIT = 1 << 28  # one message holds a resumed run's whole history
SHUTDOWN_WAIT = 120.0  # seconds a worker gets to save its snapshot when the server stops


class Worker:
    def __init__(self, run_id: str, proc, events: asyncio.StreamReader):
        self.run_id = run_id
        self.proc = proc
        self.events = events
        self.requested: str | None = None  # "pause", "stop" or "shutdown"
        self.done = asyncio.Event()


class Supervisor:
    def __init__(self, store: RunStore, max_runs: int = 2, python: str | None = None):
        if max_runs < 1:
            raise ServiceError("max_runs must be at least 1")
        self.store = store
        self.max_runs = max_runs
        self.python = python or sys.executable
        self.workers: dict[str, Worker] = {}
        self.queue: list[str] = []
        self.feeds: dict[str, RunFeed] = {}
        self._closing = False
        self._tasks: set[asyncio.Task] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        # runs trained by the process this server lives in (`cascor train --monitor`):
        # run id -> [status, stop callable]; such a server starts nothing itself
        self.attached: dict[str, list] = {}
        self._starting: set[str] = set()  # between a submit and its worker being known

    def attach(self, run_id: str, stop) -> None:
        self.attached[run_id] = ["running", stop]

    def set_attached(self, run_id: str, status: str) -> None:
        self.attached[run_id][0] = status
        self.publish_state(run_id, {"status": status})

    def status_of(self, run_id: str) -> str | None:
        """The status a server that trains nothing itself knows better than the directory."""
        return self.attached[run_id][0] if run_id in self.attached else None

    def is_live(self, run_id: str) -> bool:
        return run_id in self.workers or self.status_of(run_id) in LIVE

    # -- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        """Records that say a worker is on it, from a server that died: interrupted. Queued runs
        stay queued and start in their order."""
        self.loop = asyncio.get_running_loop()
        if self.attached:
            return  # a monitor: the runs directory's other runs are another server's business
        queued = []
        for run_id in self.store.ids():
            record = self.store.read(run_id)
            if record.get("status") == "queued":
                queued.append((record.get("queued_at", 0), run_id))
            elif record.get("status") in LIVE:
                self.store.update(run_id, status="interrupted", error="the server stopped while it was running")
        for _, run_id in sorted(queued):
            await self.submit(run_id)

    async def shutdown(self) -> None:
        self._closing = True
        self.queue.clear()
        for w in list(self.workers.values()):
            w.requested = "shutdown"
            self._signal(w)
        for w in list(self.workers.values()):
            try:
                await asyncio.wait_for(w.done.wait(), SHUTDOWN_WAIT)
            except asyncio.TimeoutError:
                w.proc.kill()
                await w.done.wait()

    def feed(self, run_id: str) -> RunFeed:
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = RunFeed()
        return feed

    def publish_state(self, run_id: str, record: dict) -> None:
        self.feed(run_id).publish({"type": "state", "run": run_id, "status": record.get("status"),
                                   "error": record.get("error"), "summary": record.get("summary")})

    def _set(self, run_id: str, **changes) -> dict:
        record = self.store.update(run_id, **changes)
        self.publish_state(run_id, record)
        return record

    # -- requests --------------------------------------------------------------------------
    async def submit(self, run_id: str) -> dict:
        """Start the run's next piece of training now, or queue it."""
        if self._closing:
            raise ServiceError("the server is stopping", 503)
        if self.attached:
            raise ServiceError("this server only watches the run its `cascor train --monitor` process trains; "
                               "`cascor serve` starts and resumes runs", 409)
        if run_id in self.workers or run_id in self.queue or run_id in self._starting:
            raise ServiceError(f"run {run_id} is already {self.store.read(run_id)['status']}", 409)
        if len(self.workers) >= self.max_runs:
            self.queue.append(run_id)
            return self._set(run_id, status="queued", error=None, queued_at=time.time())
        return await self._spawn(run_id)

    async def pause(self, run_id: str, how: str = "pause") -> dict:
        if self.status_of(run_id) == "running":
            self.attached[run_id][1]()  # the training loop stops at its next epoch boundary
            self.set_attached(run_id, "pausing" if how == "pause" else "stopping")
            return {"status": self.status_of(run_id)}
        if run_id in self.queue:
            self.queue.remove(run_id)
            return self._set(run_id, status="paused" if how == "pause" else "stopped")
        w = self.workers.get(run_id)
        if w is None:
            raise ServiceError(f"run {run_id} is not running ({self.store.read(run_id)['status']})", 409)
        w.requested = how
        self._signal(w)
        return self._set(run_id, status="pausing" if how == "pause" else "stopping")

    def _signal(self, w: Worker) -> None:
        try:
            w.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    # -- workers ---------------------------------------------------------------------------
    def argv(self, run_id: str, snapshot: str | None, record: dict) -> list[str]:
        """The command line of the run's next piece: ``cascor train`` for a new run, else
        ``cascor resume`` from its newest good snapshot."""
        directory = self.store.path(run_id)
        spec = record.get("spec") or {}
        cmd = [self.python, "-m", "cascor"]
        common = ["--out", directory, "--json", "--quiet"]
        common += ["--checkpoint-every", str(int(spec.get("checkpoint_every", 0)))]
        if spec.get("keep_last"):
            common += ["--keep-last", str(int(spec["keep_last"]))]
        data = []
        if spec.get("data"):
            data = ["--data", os.path.join(directory, spec["data"])]
            if spec.get("target") is not None:
                data += ["--target", str(spec["target"])]
        if snapshot is not None:
            grow = spec.get("max_units") and record.get("parent")  # a branch with room for more units
            extra = ["--max-units", str(int(spec["max_units"]))] if grow else []
            return cmd + ["resume", snapshot, *common, *data, *extra]
        if not spec:
            raise ServiceError(f"run {run_id} has no snapshot to resume from and no recorded settings", 409)
        args = ["train", *common, *(["--dataset", spec["dataset"]] if spec.get("dataset") else data),
                "--preset", spec.get("preset", "default")]
        if spec.get("seed") is not None:
            args += ["--seed", str(int(spec["seed"]))]
        for item in spec.get("sets", []):
            args += ["--set", item]
        if spec.get("validation_fraction"):
            args += ["--validation-fraction", repr(float(spec["validation_fraction"]))]
        if spec.get("early_stopping") is not None:
            args.append("--early-stopping" if spec["early_stopping"] else "--no-early-stopping")
        if spec.get("n_iter_no_change"):
            args += ["--n-iter-no-change", str(int(spec["n_iter_no_change"]))]
        if spec.get("scale_inputs") is not None:
            args.append("--scale-inputs" if spec["scale_inputs"] else "--no-scale-inputs")
        if spec.get("backend") not in (None, "local"):
            args += ["--backend", spec["backend"]]
        return cmd + args

    async def _spawn(self, run_id: str) -> dict:
        self._starting.add(run_id)
        try:
            return await self._start_worker(run_id)
        finally:
            self._starting.discard(run_id)

    async def _start_worker(self, run_id: str) -> dict:
        record = self.store.read(run_id)
        snapshot = await asyncio.to_thread(self.store.newest_snapshot, run_id)
        argv = self.argv(run_id, snapshot, record)
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, True)
        log = open(os.path.join(self.store.path(run_id), WORKER_LOG), "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, "--events-fd", str(write_fd), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=log, pass_fds=(write_fd,),
                start_new_session=True)  # a Ctrl-C at the server's terminal reaches the server only
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            log.close()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb"))
        w = Worker(run_id, proc, reader)
        self.workers[run_id] = w
        record = self._set(run_id, status="running", error=None, pid=proc.pid)
        task = asyncio.create_task(self._watch(w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    async def _watch(self, w: Worker) -> None:
        feed = self.feed(w.run_id)
        out = asyncio.create_task(w.proc.stdout.read())
        seen = set()
        ticker = asyncio.create_task(self._snapshot_ticker(w, seen))
        try:
            while True:
                line = await w.events.readline()
                if not line:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                feed.apply(message)
            rc = await w.proc.wait()
            stdout = await out
        finally:
            ticker.cancel()
            del self.workers[w.run_id]
            w.done.set()
        self._snapshots_changed(w.run_id, seen)
        summary = None
        try:
            summary = json.loads(stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
        asked = {"stop": "stopped", "shutdown": "interrupted"}.get(w.requested, "paused")
        if rc == 0 and summary is not None:
            status = "finished" if summary.get("finished") else asked
            self._set(w.run_id, status=status, error=None, summary=summary, pid=None)
        elif rc == -signal.SIGTERM and w.requested is not None:
            # asked to stop while still starting (before the CLI's handler was in place): it
            # wrote nothing, so it is where it was
            self._set(w.run_id, status=asked, error=None, pid=None)
        else:
            self._set(w.run_id, status="interrupted" if w.requested == "shutdown" and rc < 0 else "failed",
                      error=self._last_error(w.run_id, rc), pid=None)
        if not self._closing:
            await self._next()

    async def _next(self) -> None:
        while self.queue and len(self.workers) < self.max_runs:
            run_id = self.queue.pop(0)
            try:
                await self._spawn(run_id)
            except Exception as exc:  # noqa: BLE001 -- one bad record must not stop the queue
                self._set(run_id, status="failed", error=str(exc))

    async def _snapshot_ticker(self, w: Worker, seen: set) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._snapshots_changed(w.run_id, seen)

    def _snapshots_changed(self, run_id: str, seen: set) -> None:
        try:
            items = self.store.snapshots(run_id)
        except Exception:  # noqa: BLE001 -- the directory is being written; next tick
            return
        stamp = {(i["name"], i["modified"]) for i in items}
        if stamp != seen:
            new = sorted(n for n, _ in stamp - seen)
            seen.clear()
            seen.update(stamp)
            self.feed(run_id).publish({"type": "snapshots", "run": run_id, "new": new,
                                       "snapshots": [i["name"] for i in items]})

    def _last_error(self, run_id: str, rc: int) -> str:
        try:
            with open(os.path.join(self.store.path(run_id), WORKER_LOG), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4000))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        last = lines[-1] if lines else ""
        if last.startswith("error: "):
            return last[len("error: "):]
        return f"the worker exited with status {rc}" + (f": {last[:500]}" if last else "")
