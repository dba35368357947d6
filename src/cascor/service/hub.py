"""Live feeds: per run, the history the worker has streamed so far and the subscribers that
follow it.

A subscriber's queue coalesces: consecutive row batches merge into one message while the
subscriber is busy, so a slow page gets fewer, larger messages instead of a growing backlog.
What a page cannot do without -- unit installs, phase-end scores, status changes -- is never
dropped; if a subscriber falls more than :data:`MAX_PENDING_EPOCHS` epoch rows behind, its
pending *epoch* rows are replaced by a ``gap`` count (the page can fetch the history again),
so a stalled client costs bounded memory.
"""

from __future__ import annotations

import asyncio
import json

from .events import json_safe

MAX_PENDING_EPOCHS = 50_000
ROW_GROUPS = ("epochs", "units", "scores")


def _extend(into: dict, rows: dict) -> None:
    for group in ROW_GROUPS:
        target, new = into[group], rows.get(group) or {}
        for key, values in new.items():
            target.setdefault(key, []).extend(values)


def _copy_rows(message: dict) -> dict:
    return {**message, **{g: {k: list(v) for k, v in (message.get(g) or {}).items()} for g in ROW_GROUPS}}


def epoch_rows(message: dict) -> int:
    return len((message.get("epochs") or {}).get("epoch", ()))


class Subscriber:
    def __init__(self):
        self._pending: list[dict] = []
        self._wake = asyncio.Event()
        self._epochs = 0
        self.closed = False

    def put(self, message: dict) -> None:
        last = self._pending[-1] if self._pending else None
        if message["type"] == "rows" and not message.get("reset") and last is not None and last["type"] == "rows":
            _extend(last, message)  # coalesce into the batch still waiting
            last.update({k: v for k, v in message.items() if k not in ROW_GROUPS})
            last["reset"] = last.get("_reset", False)
        elif message["type"] == "rows":
            copy = _copy_rows(message)
            copy["_reset"] = bool(message.get("reset"))
            self._pending.append(copy)
        else:
            self._pending.append(message)
        self._epochs += epoch_rows(message)
        if self._epochs > MAX_PENDING_EPOCHS:
            self._drop_epochs()
        self._wake.set()

    def _drop_epochs(self) -> None:
        for m in self._pending:
            n = epoch_rows(m)
            if n and not m.get("_reset"):
                m["gap"] = m.get("gap", 0) + n
                m["epochs"] = {k: [] for k in m["epochs"]}
        self._epochs = sum(epoch_rows(m) for m in self._pending)

    async def get(self) -> list[dict]:
        await self._wake.wait()
        self._wake.clear()
        out, self._pending, self._epochs = self._pending, [], 0
        for m in out:
            m.pop("_reset", None)
        return out

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class RunFeed:
    """One run's live view, built from its worker's messages."""

    def __init__(self):
        self.history: dict | None = None
        self.info: dict = {}
        self.subscribers: set[Subscriber] = set()

    def apply(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "rows":
            if message.get("reset") or self.history is None:
                self.history = {g: {k: list(v) for k, v in (message.get(g) or {}).items()} for g in ROW_GROUPS}
            else:
                _extend(self.history, message)
        self.info.update({k: v for k, v in message.items() if k not in ROW_GROUPS and k not in ("type", "reset")})
        self.publish(message)

    def publish(self, message: dict) -> None:
        for sub in list(self.subscribers):
            sub.put(message)

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)


def dumps(message: dict) -> str:
    return json.dumps(json_safe(message), separators=(",", ":"), allow_nan=False)
