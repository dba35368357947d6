"""``cascor serve``: a live training service over a runs directory -- a JSON API (OpenAPI at
``/openapi.json``), a WebSocket / Server-Sent-Events stream per run, and a page that shows the
cascade grow. Needs the ``serve`` extra (FastAPI, uvicorn, websockets).

Layers, top to bottom: :mod:`.app` (routes, the token guard) -> :mod:`.supervisor` (worker
processes running ``cascor train`` / ``cascor resume``) and :mod:`.actions` (blocking work:
uploads, branches, boundaries) -> :mod:`.store` (the runs directory) -> ``cascor.workflow`` and
``cascor.snapshot``. :mod:`.events` is the one piece inside a worker: it writes the run's history
to the pipe the supervisor reads.
"""

from __future__ import annotations

SERVE_PACKAGES = ("fastapi", "uvicorn", "websockets")


def missing_packages() -> list[str]:
    import importlib.util

    return [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
