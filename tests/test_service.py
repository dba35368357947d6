"""`cascor serve` through a real server on a loopback port: security, the API, uploads, branches.

The long end-to-end runs (pause / server restart / resume bit-exact, queueing, a crashed
worker, load, the real browser) are in test_service_e2e.py under the ``service`` marker.
"""

from __future__ import annotations

import asyncio
import os
import pickle

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from service_util import TOKEN, Server, cascor  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("runs"), "--max-upload-mb", "0.25").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def finished_iris(server):
    """One finished run (iris, default preset, 20% held out) the read-only tests share."""
    status, run = server.post("/api/runs", {"dataset": "iris", "seed": 3, "validation_fraction": 0.2,
                                            "config": {"max_units": 4}, "name": "iris"})
    assert status == 201, run
    return server.wait_status(run["id"], ("finished", "failed"))


def test_every_request_needs_the_token(server):
    for path in ("/api/runs", "/", "/openapi.json", "/static/app.js", "/api/runs/x/snapshots/final.h5"):
        status, body = server.get(path, token=False)
        assert status == 401, path
        assert "token" in body["error"]
    assert server.get("/api/runs", token=False, headers={"X-Cascor-Token": TOKEN[:-1] + "x"})[0] == 401
    assert server.get("/api/runs", token=False, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert server.get(f"/api/runs?token={TOKEN}", token=False)[0] == 200
    # the page, opened with ?token=, leaves a cookie that later requests (and the stream) carry
    import urllib.request

    with urllib.request.urlopen(f"{server.base}/?token={TOKEN}") as r:
        cookie = r.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert b"<title>cascor</title>" in r.read()
    assert server.get("/api/runs", token=False, headers={"Cookie": cookie.split(";")[0]})[0] == 200


def test_stream_needs_the_token(server, finished_iris):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        with server.ws(finished_iris["id"], token=False) as ws:
            ws.recv(timeout=10)
    with server.ws(finished_iris["id"]) as ws:
        import json

        first = json.loads(ws.recv(timeout=30))
        assert first["type"] == "history" and first["status"] == "finished"


def test_other_hosts_and_origins_are_refused(server):
    # a DNS-rebinding page reaches the server under its own host name
    status, body = server.get("/api/runs", headers={"Host": "evil.example"})
    assert status == 421 and "evil.example" in body["error"]
    status, body = server.post("/api/runs", {"dataset": "xor"}, headers={"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in body["error"]
    assert server.get("/api/runs", headers={"Host": f"localhost:{server.port}"})[0] == 200
    # no CORS headers: another origin's script cannot read answers
    import urllib.request

    for method, path in (("OPTIONS", "/api/runs"), ("GET", "/api/runs")):
        req = urllib.request.Request(f"{server.base}{path}", method=method,
                                     headers={"Origin": "http://evil.example", "X-Cascor-Token": TOKEN})
        try:
            headers = urllib.request.urlopen(req).headers
        except urllib.error.HTTPError as e:
            headers = e.headers
        assert "access-control-allow-origin" not in {k.lower() for k in headers}


def test_no_name_leaves_the_runs_directory(server, finished_iris, tmp_path):
    canary = tmp_path / "secret.h5"
    canary.write_bytes(b"private")
    runs = server.runs
    os.symlink(tmp_path, os.path.join(runs, "linked"))  # a run id that resolves outside
    rid = finished_iris["id"]
    for path in ("/api/runs/..", "/api/runs/..%2F..%2Fetc", "/api/runs/%2E%2E/snapshots", "/api/runs/linked",
                 "/api/runs/linked/snapshots/secret.h5", f"/api/runs/{rid}/snapshots/..%2F..%2Fsecret.h5",
                 f"/api/runs/{rid}/snapshots/run.json", f"/api/runs/{rid}/snapshots/service.json",
                 f"/api/runs/{rid}/snapshots/%2Fetc%2Fpasswd"):
        status, body = server.get(path, raw=True)
        assert status in (400, 404), (path, status)
        assert b"private" not in body and b"root:" not in body
    status, body = server.request("DELETE", "/api/runs/linked?confirm=linked")
    assert status == 400 and "not inside" in body["error"]
    assert canary.exists()
    status, body = server.post(f"/api/runs/{rid}/branch", {"snapshot": "../../secret.h5"})
    assert status == 404
    status, body = server.post("/api/runs", {"upload": "../secret.h5"})
    assert status == 400 and "no upload" in body["error"]
    os.unlink(os.path.join(runs, "linked"))


def test_uploads_are_limited_and_parsed_like_data_files(server):
    before = set(os.listdir(server.runs))
    status, body = server.post("/api/uploads?filename=big.csv", b"1,2,0\n" * 100_000)  # 600 KB > 0.25 MB
    assert status == 413 and "too large" in body["error"]
    status, body = server.post("/api/uploads?filename=x.csv", bytes(range(256)) * 10)
    assert status == 400 and body["error"].startswith("upload 'x.csv':")
    status, body = server.post("/api/uploads?filename=m.npz", pickle.dumps({"X": 1}))
    assert status == 400
    assert set(os.listdir(server.runs)) - before <= {".uploads"}
    assert not os.listdir(os.path.join(server.runs, ".uploads"))
    import io

    buf = io.BytesIO()
    np.savez(buf, X=np.random.default_rng(0).normal(size=(50, 3)), y=np.arange(50) % 2)
    status, body = server.post("/api/uploads?filename=d.npz", buf.getvalue())
    assert status == 201 and body["rows"] == 50 and body["features"] == 3 and body["upload"].endswith(".npz")


def test_a_hostile_snapshot_is_refused_with_the_readers_message(server, tmp_path):
    from hostile import make_bases, make_corpus

    corpus = make_corpus(*make_bases(str(tmp_path)), str(tmp_path / "corpus"))
    from cascor import snapshot
    from cascor.errors import CascorError

    before = set(os.listdir(server.runs))
    for name in ("hardlink-cycle", "deep-json-meta", "unallocated-3gb"):
        with pytest.raises(CascorError) as reader:
            snapshot.load(corpus[name])
        data = open(corpus[name], "rb").read()
        if len(data) > 0.25 * (1 << 20):
            continue
        status, body = server.post("/api/snapshots", data)
        assert status == 400, name
        assert str(reader.value).replace(corpus[name], "the upload") in body["error"], (name, body)
    status, body = server.post("/api/snapshots", pickle.dumps(os.system))
    assert status == 400 and "uploaded snapshot" in body["error"]
    assert set(os.listdir(server.runs)) == before  # nothing left behind


def test_a_run_from_creation_to_deletion(server, finished_iris, tmp_path):
    rid = finished_iris["id"]
    assert finished_iris["status"] == "finished", finished_iris
    run = finished_iris
    assert run["history"]["units"]["epoch"] and run["saved"]["best_n_units"] is not None
    names = [s["name"] for s in run["snapshots"]]
    assert "final.h5" in names
    # the same directory the CLI writes: the CLI can evaluate and resume it
    p = cascor("evaluate", os.path.join(server.runs, rid, "final.h5"), "--json")
    assert p.returncode == 0, p.stderr
    status, data = server.get(f"/api/runs/{rid}/snapshots/final.h5", raw=True)
    assert status == 200 and data == open(os.path.join(server.runs, rid, "final.h5"), "rb").read()
    # evaluate / predict on uploaded rows
    from cascor.datasets import load_dataset

    ds = load_dataset("iris")  # (standardised, as the run saw it)
    X, y = ds.X, ds.y
    csv = "\n".join(",".join(f"{v:g}" for v in row) + f",{t}" for row, t in zip(X, y)).encode()
    status, scores = server.post(f"/api/runs/{rid}/evaluate?filename=iris.csv", csv)
    assert status == 200 and scores["rows"] == 150 and 0.8 < scores["accuracy"] <= 1.0
    rows = "\n".join(",".join(f"{v:g}" for v in row) for row in X[:5]).encode()
    status, pred = server.post(f"/api/runs/{rid}/predict", rows)
    assert status == 200 and len(pred["prediction"]) == 5 and np.allclose(np.sum(pred["probabilities"], 1), 1)
    status, body = server.post(f"/api/runs/{rid}/predict", b"1,2\n")
    assert status == 400 and "4 finite numbers" in body["error"]
    # the boundary of a 4-D problem is refused with the reason
    status, body = server.get(f"/api/runs/{rid}/boundary")
    assert status == 409 and "2-D" in body["error"]
    # branching changes only what can apply to a continued run
    status, body = server.post(f"/api/runs/{rid}/branch", {"snapshot": "final.h5", "seed": 4})
    assert status == 400 and "seed cannot change" in body["error"]
    # (the run held data out, so its final network was refit on all of it: it cannot grow further)
    status, body = server.post(f"/api/runs/{rid}/branch", {"snapshot": "final.h5", "max_units": 8})
    assert status == 400 and "cannot grow further" in body["error"], body
    assert server.post(f"/api/runs/{rid}/resume")[0] == 409  # finished: branch it instead
    # deleting needs the id twice, and not while it runs
    status, body = server.request("DELETE", f"/api/runs/{rid}")
    assert status == 400 and f"confirm={rid}" in body["error"]
    openapi = server.get("/openapi.json")[1]
    for path in ("/api/runs", "/api/runs/{run_id}/branch", "/api/runs/{run_id}/pause", "/api/snapshots"):
        assert path in openapi["paths"]


def test_an_uploaded_csv_trains_and_branches(server):
    from sklearn.datasets import make_moons

    X, y = make_moons(200, noise=0.2, random_state=0)
    X[:, 1] = X[:, 1] * 1000.0 + 5000.0  # a column in a user's own unit: the run standardises it
    csv = ("a,b,label\n" + "\n".join(f"{a:.5f},{b:.5f},{t}" for (a, b), t in zip(X, y))).encode()
    status, up = server.post("/api/uploads?filename=moons.csv", csv)
    assert status == 201 and up["rows"] == 200 and up["features"] == 2 and up["task"] == "classification"
    status, run = server.post("/api/runs", {"upload": up["upload"], "preset": "cascor1c", "seed": 1,
                                            "config": {"max_units": 2}})
    assert status == 201, run
    rid = run["id"]
    done = server.wait_status(rid, ("finished", "failed"))
    assert done["status"] == "finished", done
    assert os.path.exists(os.path.join(server.runs, rid, "data.csv"))
    status, b = server.get(f"/api/runs/{rid}/boundary?size=16")
    assert status == 200 and len(b["values"]) == 256 and 0 <= min(b["values"]) <= max(b["values"]) <= 1
    assert len(b["points"]["x"]) > 0 and set(b["points"]["label"]) == {0, 1}
    assert b["y"][0] < X[:, 1].min() and b["y"][1] > X[:, 1].max()  # drawn in the file's own units
    from cascor import snapshot

    assert snapshot.load(os.path.join(server.runs, rid, "final.h5")).state.input_scaling is not None
    rows = "\n".join(f"{a:.5f},{b:.5f}" for a, b in X).encode()
    status, pred = server.post(f"/api/runs/{rid}/predict", rows)
    assert status == 200 and np.mean(np.asarray(pred["prediction"]) == y) > 0.8, pred
    status, branch = server.post(f"/api/runs/{rid}/branch", {"snapshot": "final.h5", "max_units": 4})
    assert status == 201, branch
    grown = server.wait_status(branch["id"], ("finished", "failed"))
    assert grown["status"] == "finished", grown
    assert grown["summary"]["hidden_units"] > done["summary"]["hidden_units"]
    assert grown["parent"] == {"run": rid, "snapshot": "final.h5", "epoch": done["summary"]["epochs"]}
    # an uploaded upload id is used once
    status, body = server.post("/api/runs", {"upload": up["upload"]})
    assert status == 400 and "used once" in body["error"]


def test_bad_settings_get_the_clis_one_line_message(server):
    before = set(os.listdir(server.runs))
    cases = [({"dataset": "nope"}, "unknown dataset 'nope'"), ({"dataset": "xor", "preset": "nope"}, "unknown preset"),
             ({"dataset": "xor", "config": {"max_unitz": 3}}, "unknown config key 'max_unitz'"),
             ({"dataset": "xor", "seed": -1}, "seed"), ({"dataset": "xor", "upload": "x.csv"}, "exactly one"),
             ({"dataset": "xor", "bogus": 1}, "bogus")]
    for body, text in cases:
        status, answer = server.post("/api/runs", body)
        assert status in (400, 422) and text in answer["error"], (body, answer)
    assert set(os.listdir(server.runs)) == before


def test_serve_refuses_no_token_off_loopback_and_short_tokens(tmp_path):
    p = cascor("serve", "--runs", str(tmp_path), "--host", "0.0.0.0", "--no-token")
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "needs a token" in p.stderr
    p = cascor("serve", "--runs", str(tmp_path), "--token", "short")
    assert p.returncode == 1 and "at least 16" in p.stderr


def test_a_slow_subscriber_gets_coalesced_batches_and_never_loses_installs(monkeypatch):
    from cascor.service import hub

    monkeypatch.setattr(hub, "MAX_PENDING_EPOCHS", 500)

    def rows(start, n, unit=False):
        return {"type": "rows", "epoch": start + n, "epochs": {"epoch": list(range(start, start + n))},
                "units": {"epoch": [start + n] if unit else []}, "scores": {"epoch": []}}

    async def scenario():
        feed = hub.RunFeed()
        sub = feed.subscribe()
        feed.apply({**rows(0, 10), "reset": True})
        for k in range(10, 300, 10):
            feed.apply(rows(k, 10, unit=k % 50 == 0))
        first = await sub.get()
        assert len(first) == 1 and first[0]["reset"] and first[0]["epochs"]["epoch"] == list(range(300))
        assert first[0]["units"]["epoch"] == [k + 10 for k in range(50, 300, 50)]
        for k in range(300, 2000, 10):  # a stalled subscriber: epochs past the bound are dropped ...
            feed.apply(rows(k, 10, unit=k % 100 == 0))
        feed.publish({"type": "state", "status": "paused"})
        later = await sub.get()
        assert [m["type"] for m in later] == ["rows", "state"]  # ... coalesced into one batch
        assert later[0]["gap"] > 0 and len(later[0]["epochs"]["epoch"]) + later[0]["gap"] == 1700
        assert later[0]["units"]["epoch"] == [k + 10 for k in range(300, 2000, 100)]  # installs all there
        assert feed.history["epochs"]["epoch"] == list(range(2000))  # the feed itself keeps everything

    asyncio.run(scenario())


def test_train_monitor_shows_the_run_and_stops_it_from_the_page(tmp_path):
    """`cascor train --monitor`: the page and API for this one run, from the training process."""
    import json
    import re
    import subprocess
    import sys
    import urllib.request

    out = tmp_path / "runs" / "watched"
    proc = subprocess.Popen([sys.executable, "-m", "cascor", "train", "--dataset", "two-spirals", "--preset",
                             "fahlman-spirals", "--seed", "2", "--checkpoint-every", "1", "--out", str(out),
                             "--monitor", "--monitor-port", "0", "--json", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
        assert m, line + proc.stderr.read()
        base, token = m.groups()

        def call(method, path):
            req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None,
                                         headers={"X-Cascor-Token": token})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        from websockets.sync.client import connect

        with connect(f"{base.replace('http', 'ws')}/api/runs/watched/stream?token={token}") as ws:
            first = json.loads(ws.recv(timeout=60))
            assert first["type"] == "history"
            while True:
                msg = json.loads(ws.recv(timeout=60))
                if msg["type"] == "rows" and msg["hidden_units"] >= 1:
                    break
            assert call("GET", "/api/runs")[1]["runs"][0]["status"] == "running"
            status, body = call("POST", "/api/runs")
            assert status == 422 or "only watches" in body.get("error", "")
            assert call("POST", "/api/runs/watched/resume")[0] == 409
            assert call("POST", "/api/runs/watched/stop")[0] == 200
            while not (msg["type"] == "state" and msg["status"] in ("stopped", "paused", "finished")):
                msg = json.loads(ws.recv(timeout=60))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert msg["status"] == "stopped" and not summary["finished"]
    assert (out / "latest.h5").exists()  # stopped at an epoch boundary with a snapshot, as for Ctrl-C


def test_serve_without_the_extra_says_what_to_install(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['uvicorn'] = None; sys.argv = ['cascor', 'serve', '--runs', sys.argv[1]]; "
            "from cascor.cli import main; main()")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr == "error: cascor serve needs uvicorn: pip install 'cascor[serve]'\n"


def test_uploads_no_run_took_are_swept_after_a_day(tmp_path):
    from cascor.service import actions
    from cascor.service.store import RunStore

    store = RunStore(str(tmp_path))
    folder = tmp_path / actions.UPLOADS
    folder.mkdir()
    old, new = folder / "a.csv", folder / "b.csv"
    old.write_text("1,0\n")
    new.write_text("1,0\n")
    os.utime(old, (0, 0))
    assert actions.sweep_uploads(store) == 1 and not old.exists() and new.exists()


def test_an_imported_snapshot_gets_its_data_from_an_upload_never_its_recorded_path(server, tmp_path):
    from sklearn.datasets import make_moons

    X, y = make_moons(120, noise=0.2, random_state=1)
    csv = tmp_path / "private.csv"
    csv.write_text("a,b,t\n" + "\n".join(f"{a:.5f},{b:.5f},{t}" for (a, b), t in zip(X, y)) + "\n")
    p = cascor("train", "--data", str(csv), "--preset", "cascor1c", "--set", "max_units=3", "--stop-after", "40",
               "--out", str(tmp_path / "cli"), "--quiet")
    assert p.returncode == 0, p.stderr
    status, run = server.post("/api/snapshots", (tmp_path / "cli" / "latest.h5").read_bytes())
    assert status == 201 and run["status"] == "paused", run
    rid = run["id"]
    server.post(f"/api/runs/{rid}/resume")
    failed = server.wait_status(rid, ("failed", "finished"))
    assert failed["status"] == "failed" and "recorded file only" in failed["error"]  # the path was not followed

    def attach(text):
        status, up = server.post("/api/uploads?filename=d.csv", text.encode())
        assert status == 201
        status, body = server.post(f"/api/runs/{rid}/data", {"upload": up["upload"]})
        assert status == 200, body

    attach(csv.read_text().replace(f"{X[0, 0]:.5f}", f"{X[0, 0] + 1:.5f}", 1))  # not the run's data
    server.post(f"/api/runs/{rid}/resume")
    wrong = server.wait_status(rid, ("failed", "finished"))
    assert wrong["status"] == "failed" and "differs from the data this run was trained on" in wrong["error"]
    attach(csv.read_text())
    server.post(f"/api/runs/{rid}/resume")
    assert server.wait_status(rid, ("failed", "finished"))["status"] == "finished"


def test_a_second_server_on_the_same_runs_is_refused(server):
    p = cascor("serve", "--runs", server.runs, "--port", "0", "--token", TOKEN)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert f"another cascor serve (pid {server.proc.pid})" in p.stderr
