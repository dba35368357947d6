"""A run directory belongs to one run: its lock, its owner and where a resume starts.

* **Lock**: ``DIR/.cascor.lock``, an exclusive ``flock`` taken by the trainer and inherited by
  its snapshot helper, so the directory stays locked until the last checkpoint the run handed
  over is on disk, even after the trainer was killed. A second trainer is refused while the
  first one lives; a trainer that finds only a dead run's helper still flushing waits for it.
* **Owner**: ``DIR/run.json`` names the run (its ``run_id``). Training a new run into a
  directory that holds another run is refused with the ways to continue; retention and
  ``latest.h5`` only ever touch the owner's files.
* **Resume point**: the newest snapshot of the directory that verifies (``latest.h5``, else
  the newest ``ckpt-*.h5``), or a refusal that says why none does.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time

from ..errors import RunDirectoryError, SnapshotError

LOCK_NAME = ".cascor.lock"
RUN_FILE = "run.json"
HELPER_WAIT_SECONDS = 30.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


class RunLock:
    """The exclusive lock of a run directory. ``fd`` is passed to the snapshot helper."""

    def __init__(self, directory: str, fd: int):
        self.directory = directory
        self.fd = fd

    @classmethod
    def acquire(cls, directory: str, *, wait_for_helper: float = HELPER_WAIT_SECONDS, echo=None) -> "RunLock":
        import fcntl

        path = os.path.join(directory, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunDirectoryError(f"cannot lock run directory {directory}: {exc.strerror or exc}") from None
        deadline, told = None, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise RunDirectoryError(f"cannot lock run directory {directory}: {exc.strerror}") from None
            holder = _read_holder(fd)
            if holder and _pid_alive(holder) and holder != os.getpid():
                os.close(fd)
                raise RunDirectoryError(
                    f"run directory {directory} is in use by another cascor process (pid {holder}); "
                    "wait for it to finish or pass another --out")
            # The trainer is gone but its helper still writes the checkpoints it was handed.
            deadline = deadline or time.monotonic() + wait_for_helper
            if time.monotonic() > deadline:
                os.close(fd)
                raise RunDirectoryError(
                    f"run directory {directory} is still locked by the snapshot writer of a run that ended "
                    f"(waited {wait_for_helper:.0f} s); try again later")
            if echo is not None and not told:
                echo(f"waiting for the previous run's snapshot writer to finish in {directory}")
                told = True
            time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid()}).encode(), 0)
        return cls(directory, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # the helper's inherited copy keeps it until the helper exits
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd: int) -> int | None:
    try:
        data = os.pread(fd, 200, 0)
        pid = json.loads(data.decode()).get("pid")
        return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None


def live_holder(directory: str) -> int | None:
    """The pid of the live process that last took ``directory``'s lock, without touching the
    lock (a status display must never make a starting trainer's lock fail). A pid the OS has
    since reused can show a finished run as held: good enough for a display, not for a decision."""
    try:
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        pid = _read_holder(fd)
    finally:
        os.close(fd)
    return pid if pid is not None and _pid_alive(pid) else None


def read_owner(directory: str) -> str | None:
    """The run_id recorded in ``DIR/run.json``; None without one."""
    path = os.path.join(directory, RUN_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunDirectoryError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunDirectoryError(f"{path} is not a regular file")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        doc = json.loads(data.decode())
        run_id = doc["run_id"]
        if not isinstance(run_id, str) or not run_id.isalnum() or len(run_id) > 64:
            raise ValueError
        return run_id
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RunDirectoryError(f"{path} is damaged (expected a JSON object with a run_id)") from None


def write_owner(directory: str, run_id: str) -> None:
    from .writer import atomic_write

    atomic_write(os.path.join(directory, RUN_FILE),
                 (json.dumps({"format": "cascor-run", "run_id": run_id}, sort_keys=True) + "\n").encode())


def snapshot_names(directory: str) -> list[str]:
    """The names of the snapshot files a run directory holds (checkpoints, final, latest)."""
    from .manager import CKPT_RE

    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunDirectoryError(f"cannot list run directory {directory}: {exc.strerror or exc}") from None
    return sorted(n for n in names if CKPT_RE.match(n) or n in ("final.h5", "latest.h5"))


def directory_owner(directory: str) -> str | None:
    """Whose run ``directory`` holds: run.json, else (a directory from before run.json) the run_id
    of its newest snapshot that verifies. None for a directory without snapshots."""
    owner = read_owner(directory)
    if owner is not None:
        return owner
    names = snapshot_names(directory)
    if not names:
        return None
    found = newest_valid(directory)
    if found is None:
        raise RunDirectoryError(f"{directory} holds snapshot files but none verifies; pass another --out")
    return found[1]


def newest_valid(directory: str) -> tuple[str, str, list[str]] | None:
    """(path, run_id, reasons) of the newest snapshot in ``directory`` that verifies.

    ``latest.h5`` first; then final.h5 and the checkpoints, newest first. ``reasons`` says why
    each newer candidate was passed over. None when nothing verifies.
    """
    from . import inspect as inspect_snapshot
    from .manager import CKPT_RE

    names = snapshot_names(directory)
    ckpts = sorted((n for n in names if CKPT_RE.match(n)), reverse=True)
    order = [n for n in ("latest.h5", "final.h5") if n in names] + ckpts
    reasons = []
    for name in order:
        path = os.path.join(directory, name)
        try:
            info = inspect_snapshot(path)
        except SnapshotError as exc:
            reasons.append(str(exc))
            continue
        return path, info["run_id"], reasons
    return None


def resume_point(directory: str) -> tuple[str | None, list[str]]:
    """The snapshot ``train --resume`` continues from (None: nothing to resume) and the reasons
    newer files were passed over. Raises when snapshot files exist but none verifies."""
    names = snapshot_names(directory)
    if not names:
        return None, []
    found = newest_valid(directory)
    if found is None:
        raise RunDirectoryError(f"cannot resume from {directory}: no snapshot there verifies "
                                f"({len(names)} file(s) tried); pass another --out to start afresh")
    return found[0], found[2]


def refuse_other(directory: str, run_id: str | None = None) -> None:
    """Raise unless ``directory`` holds no run, or (``run_id`` given) holds run ``run_id``: a run
    written into another run's directory would mix its checkpoints with the other's."""
    owner = directory_owner(directory)
    if owner is not None and owner != run_id:
        raise RunDirectoryError(
            f"{directory} already holds another run ({owner}); continue it with `cascor train ... --out {directory} "
            f"--resume` or `cascor resume {os.path.join(directory, 'latest.h5')} --out {directory}`, "
            "or pass a new --out")


def claim(directory: str, run_id: str, *, new_run: bool) -> None:
    """Make ``directory`` the run ``run_id``'s (writing run.json), or refuse (:func:`refuse_other`):
    a new run needs a directory without a run; a continued run, one without another run."""
    refuse_other(directory, None if new_run else run_id)
    if read_owner(directory) is None:
        write_owner(directory, run_id)
