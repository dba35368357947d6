"""The runs directory: the service's single source of truth.

Each run is a directory ``RUNS/<id>`` exactly as ``cascor train --out`` writes it (run.json,
checkpoints, latest.h5, final.h5), plus ``service.json``: how the service started it (the
spec it turns into a ``cascor train`` command line), its status, its error and its parent for
a branch. A restarted server reads everything back from here; a run directory the CLI wrote
(no service.json) is listed too, with a status read off its files.

Names from requests never become paths directly: a run id must match :data:`RUN_ID_RE` and
name a direct child of the runs directory, a snapshot name must be one the run directory
lists, and both are resolved and checked to stay inside the runs directory.
"""

from __future__ import annotations

import json
import os
import re
import time

from ..errors import CascorError
from ..snapshot.rundir import live_holder
from ..snapshot.writer import atomic_write

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SERVICE_FILE = "service.json"
UPLOAD_NAMES = ("data.csv", "data.npz")  # an uploaded training file, in its run directory
# what a run may be; the *ing states are requests on their way to a worker
STATUSES = ("queued", "running", "pausing", "stopping", "paused", "stopped", "finished", "failed", "interrupted",
            "external")
LIVE = ("queued", "running", "pausing", "stopping")


class ServiceError(CascorError):
    """A request the service refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class NotFound(ServiceError):
    def __init__(self, message: str):
        super().__init__(message, 404)


class RunStore:
    """``only``: the one run this store shows (``cascor train --monitor``); others do not exist."""

    def __init__(self, root: str, only: str | None = None):
        self.root = os.path.realpath(root)
        self.only = only
        os.makedirs(self.root, exist_ok=True)
        self._snapshot_cache: dict[str, tuple] = {}

    # -- names -----------------------------------------------------------------------------
    def path(self, run_id: str, must_exist: bool = True) -> str:
        if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
            raise ServiceError(f"run id {run_id!r} is not a valid name (letters, digits, '-', '_'; at most 64)")
        path = os.path.join(self.root, run_id)
        real = os.path.realpath(path)
        if os.path.dirname(real) != self.root:
            raise ServiceError(f"run {run_id!r} is not inside the runs directory")
        if (must_exist and not os.path.isdir(real)) or (self.only is not None and run_id != self.only):
            raise NotFound(f"no run {run_id!r}")
        return real

    def snapshot_path(self, run_id: str, name: str) -> str:
        from ..snapshot.rundir import snapshot_names

        directory = self.path(run_id)
        if name not in snapshot_names(directory):
            raise NotFound(f"run {run_id!r} has no snapshot {name!r}")
        real = os.path.realpath(os.path.join(directory, name))  # latest.h5 may be a link to a checkpoint
        if os.path.dirname(real) != directory or not os.path.isfile(real):
            raise ServiceError(f"snapshot {name!r} of run {run_id!r} is not a file in its run directory")
        return real

    def new_id(self, hint: str = "run") -> str:
        hint = re.sub(r"[^A-Za-z0-9_-]+", "-", hint).strip("-_")[:40] or "run"
        n = 1 + max((int(m.group(1)) for m in map(re.compile(r"^(\d{4,})-").match, self.ids()) if m), default=0)
        while True:
            run_id = f"{n:04d}-{hint}"
            try:
                os.mkdir(os.path.join(self.root, run_id))
                return run_id
            except FileExistsError:
                n += 1

    def ids(self) -> list[str]:
        if self.only is not None:
            return [self.only]
        return sorted(n for n in os.listdir(self.root)
                      if RUN_ID_RE.match(n) and os.path.isdir(os.path.join(self.root, n)))

    # -- records ---------------------------------------------------------------------------
    def read(self, run_id: str) -> dict:
        """The run's record: service.json, or for a directory the CLI wrote, one read off its files."""
        directory = self.path(run_id)
        try:
            with open(os.path.join(directory, SERVICE_FILE), "rb") as f:
                record = json.loads(f.read(1 << 20))
            if not isinstance(record, dict) or record.get("format") != "cascor-service-run":
                raise ValueError
        except FileNotFoundError:  # a directory `cascor train` wrote
            record = {"format": "cascor-service-run", "id": run_id, "spec": None, "parent": None, "error": None,
                      "created": os.path.getmtime(directory)}
            record["status"] = "finished" if os.path.exists(os.path.join(directory, "final.h5")) else "stopped"
            if self.only is None and live_holder(directory) is not None:
                record["status"] = "external"  # a CLI process trains it now
        except (OSError, ValueError):
            record = {"format": "cascor-service-run", "id": run_id, "spec": None, "parent": None,
                      "status": "failed", "error": f"{SERVICE_FILE} of run {run_id} cannot be read",
                      "created": os.path.getmtime(directory)}
        record["id"] = run_id
        return record

    def write(self, run_id: str, record: dict) -> None:
        record = dict(record, format="cascor-service-run", id=run_id, updated=time.time())
        atomic_write(os.path.join(self.path(run_id), SERVICE_FILE),
                     (json.dumps(record, sort_keys=True, indent=1) + "\n").encode())

    def update(self, run_id: str, **changes) -> dict:
        record = self.read(run_id)
        record.update(changes)
        self.write(run_id, record)
        return record

    def snapshots(self, run_id: str) -> list[dict]:
        from ..snapshot.rundir import snapshot_names

        directory = self.path(run_id)
        out = []
        for name in snapshot_names(directory):
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # retention removed it meanwhile
            item = {"name": name, "bytes": st.st_size, "modified": st.st_mtime}
            if os.path.islink(path):
                item["points_to"] = os.path.basename(os.readlink(path))
            out.append(item)
        return out

    def newest_snapshot(self, run_id: str) -> str | None:
        """The snapshot a run would resume from (latest.h5, else final.h5 or the newest
        checkpoint that verifies); None for a run with none yet."""
        from ..snapshot.rundir import resume_point

        try:
            return resume_point(self.path(run_id))[0]
        except CascorError:
            return None

    def load_snapshot(self, path: str):
        """The snapshot in ``path``, read by the safe reader (cached while the file is unchanged)."""
        from ..snapshot import load

        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._snapshot_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        loaded = load(path)
        if len(self._snapshot_cache) > 64:
            self._snapshot_cache.clear()
        self._snapshot_cache[path] = (key, loaded)
        return loaded

    def history(self, run_id: str) -> dict | None:
        """The newest snapshot's history and network summary (None: no snapshot yet)."""
        path = self.newest_snapshot(run_id)
        if path is None:
            return None
        state = self.load_snapshot(path).state
        return {"snapshot": os.path.basename(path), "history": state.history.to_dict(),
                "status": state.status, "phase": state.phase.name, "epoch": state.counters.epoch,
                "hidden_units": state.network.n_hidden,
                "n_inputs": state.network.n_inputs, "n_outputs": state.network.n_outputs,
                "best_n_units": state.best_n_units}

