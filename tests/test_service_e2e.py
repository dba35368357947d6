"""`cascor serve` end to end (marker ``service``; .ci/run runs it): a run paused, the server
stopped and started again, the run resumed -- and its final snapshot identical by content to
`cascor train` with the same settings; runs interrupted by a server stop; the queue; a crashed
worker; 20 subscribers on one run beside 4 concurrent runs; and the page in a real browser.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

from service_util import TOKEN, Server, cascor, follow  # noqa: E402

pytestmark = pytest.mark.service
SPIRALS = {"dataset": "two-spirals", "preset": "fahlman-spirals", "checkpoint_every": 1}


def reference(tmp_path, seed: int) -> str:
    out = tmp_path / f"reference-{seed}"
    p = cascor("train", "--dataset", "two-spirals", "--preset", "fahlman-spirals", "--seed", str(seed),
               "--out", str(out), "--quiet", "--json")
    assert p.returncode == 0, p.stderr
    return str(out / "final.h5")


def assert_same_training_state(a: str, b: str) -> None:
    p = cascor("snapshot", "diff", a, b)
    assert p.returncode == 0 and "identical training state" in p.stdout, p.stdout + p.stderr


class Stream:
    """What a client rebuilds from a run's stream: the history message, then batches
    (a ``reset`` batch -- a worker starting -- replaces what came before)."""

    def __init__(self):
        self.epochs: list[int] = []
        self.units: list[int] = []
        self.states: list[str] = []
        self.first = None

    def take(self, messages):
        for m in messages:
            if m["type"] == "history":
                self.first = m
                h = m["history"] or {"epochs": {"epoch": []}, "units": {"epoch": []}}
                self.epochs, self.units = list(h["epochs"]["epoch"]), list(h["units"]["epoch"])
            elif m["type"] == "rows":
                if m["reset"]:
                    self.epochs, self.units = [], []
                self.epochs += m["epochs"].get("epoch", [])
                self.units += m["units"].get("epoch", [])
            elif m["type"] == "state":
                self.states.append(m["status"])
        return self


def contiguous(epochs: list[int]) -> bool:
    """Each epoch once, in order (a solved run repeats its last epoch: the win-test pass)."""
    steps = [b - a for a, b in zip(epochs, epochs[1:])]
    return all(s == 1 for s in steps[:-1]) and steps[-1:] in ([1], [0], [])


def test_pause_stop_server_start_resume_is_bit_exact(tmp_path):
    runs = tmp_path / "runs"
    srv = Server(runs).start()
    try:
        status, run = srv.post("/api/runs", {**SPIRALS, "seed": 5})
        assert status == 201, run
        rid = run["id"]
        with srv.ws(rid) as ws:
            live = Stream().take(follow(ws, lambda m: m["type"] == "rows" and m["hidden_units"] >= 2))
            assert live.first["type"] == "history"
            status, paused = srv.post(f"/api/runs/{rid}/pause")
            assert status == 200 and paused["status"] in ("pausing", "paused")
            live.take(follow(ws, lambda m: m["type"] == "state" and m["status"] == "paused"))
        assert contiguous(live.epochs) and live.epochs[0] == 1
        record = srv.wait_status(rid, ("paused",))
        assert record["summary"]["epochs"] == live.epochs[-1] and not record["summary"]["finished"]
        assert live.units == record["history"]["units"]["epoch"] and len(live.units) >= 2
        assert "latest.h5" in [s["name"] for s in record["snapshots"]]
    finally:
        assert srv.stop() == 0
    srv = Server(runs).start()  # a new server process over the same directory
    try:
        again = srv.get(f"/api/runs/{rid}")[1]
        assert again["status"] == "paused" and again["history"]["epochs"]["epoch"][-1] == live.epochs[-1]
        assert srv.post(f"/api/runs/{rid}/resume")[0] == 200
        with srv.ws(rid) as ws:  # a late subscriber: the history so far, then live batches
            rest = Stream().take(follow(ws, lambda m: m["type"] == "state" and m["status"] in ("finished", "failed")))
        assert rest.states[-1] == "finished" and contiguous(rest.epochs)
        assert rest.epochs[:len(live.epochs)] == live.epochs
    finally:
        assert srv.stop() == 0
    assert_same_training_state(reference(tmp_path, 5), str(runs / rid / "final.h5"))


def test_a_server_stop_interrupts_runs_that_resume_bit_exactly(tmp_path):
    runs = tmp_path / "runs"
    srv = Server(runs).start()
    try:
        rid = srv.post("/api/runs", {**SPIRALS, "seed": 6})[1]["id"]
        with srv.ws(rid) as ws:
            follow(ws, lambda m: m["type"] == "rows" and m["hidden_units"] >= 1)
    finally:
        assert srv.stop() == 0  # SIGTERM: the worker is asked to stop and save first
    record = json.loads((runs / rid / "service.json").read_text())
    assert record["status"] == "interrupted"
    srv = Server(runs).start()
    try:
        assert srv.get(f"/api/runs/{rid}")[1]["status"] == "interrupted"
        srv.post(f"/api/runs/{rid}/resume")
        assert srv.wait_status(rid, ("finished", "failed"))["status"] == "finished"
    finally:
        srv.stop()
    assert_same_training_state(reference(tmp_path, 6), str(runs / rid / "final.h5"))


def test_queue_and_a_crashed_worker(tmp_path):
    srv = Server(tmp_path / "runs", "--max-runs", "1").start()
    try:
        a = srv.post("/api/runs", {**SPIRALS, "seed": 7})[1]["id"]
        status, b = srv.post("/api/runs", {"dataset": "xor", "seed": 1})
        assert b["status"] == "queued" and b["queue_position"] == 1
        with srv.ws(a) as ws:
            follow(ws, lambda m: m["type"] == "rows" and m["hidden_units"] >= 1)
            pid = json.loads((tmp_path / "runs" / a / "service.json").read_text())["pid"]
            os.kill(pid, signal.SIGKILL)  # the worker dies mid-run
            follow(ws, lambda m: m["type"] == "state" and m["status"] == "failed")
        failed = srv.get(f"/api/runs/{a}")[1]
        assert failed["status"] == "failed" and "exited with status -9" in failed["error"]
        assert srv.wait_status(b["id"], ("finished", "failed"))["status"] == "finished"  # the queue moved on
        srv.post(f"/api/runs/{a}/resume")  # from its last checkpoint (it waits for the dead run's writer)
        assert srv.wait_status(a, ("finished", "failed"))["status"] == "finished"
    finally:
        srv.stop()
    p = cascor("snapshot", "verify", str(tmp_path / "runs" / a / "final.h5"))
    assert p.returncode == 0, p.stderr


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_twenty_subscribers_and_four_runs_lose_no_install_or_state(tmp_path):
    srv = Server(tmp_path / "runs", "--max-runs", "4").start()
    try:
        # warm up: the first snapshot the server reads imports torch (~190 MB) -- not load
        warm = srv.post("/api/runs", {"dataset": "xor", "seed": 1})[1]["id"]
        assert srv.wait_status(warm, ("finished",))["history"] is not None
        rss0 = _rss_kib(srv.proc.pid)
        ids = [srv.post("/api/runs", {"dataset": "two-spirals", "preset": "fahlman-spirals", "seed": s,
                                      "start": s != 1})[1]["id"] for s in (1, 2, 3, 4)]
        watched = ids[0]
        streams = [None] * 20
        ready = threading.Barrier(21)

        def subscriber(k):
            with srv.ws(watched) as ws:
                messages = [json.loads(ws.recv(timeout=60))]
                ready.wait(60)
                messages += follow(ws, lambda m: m["type"] == "state" and m["status"] in ("finished", "failed"))
            streams[k] = Stream().take(messages)

        threads = [threading.Thread(target=subscriber, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        ready.wait(60)  # all 20 follow the run before it starts
        srv.post(f"/api/runs/{watched}/resume")
        for t in threads:
            t.join(300)
        final = {r: srv.wait_status(r, ("finished", "failed")) for r in ids}
        rss1 = _rss_kib(srv.proc.pid)
    finally:
        srv.stop()
    assert all(r["status"] == "finished" for r in final.values()), final
    history = final[watched]["history"]
    for s in streams:
        assert s is not None
        assert s.units == history["units"]["epoch"]  # every install, once
        assert s.epochs == history["epochs"]["epoch"]  # (and here every epoch: no subscriber fell behind)
        assert s.states[:1] == ["running"] and s.states[-1] == "finished"
    assert rss1 - rss0 < 100_000, (rss0, rss1)  # KiB: bounded, not growing with subscribers' backlog


# -- the page in a real browser ---------------------------------------------------------------
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if os.environ.get("CI"):
            pytest.fail("the browser test needs Debian's chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("apt-get install chromium chromium-driver to run the browser test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, script: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script("return " + script)
        if value:
            return value
        if time.monotonic() > deadline:
            state = driver.execute_script("return JSON.stringify({s: cascor.status, i: cascor.installs, "
                                          "e: cascor.outputEpochs, r: cascor.selected, x: cascor.errors})")
            raise AssertionError(f"timed out waiting for {script}: {state}")
        time.sleep(0.2)


def test_the_page_in_a_real_browser(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    artefacts = os.environ.get("CASCOR_TEST_ARTIFACTS", str(tmp_path))
    os.makedirs(artefacts, exist_ok=True)
    srv = Server(tmp_path / "runs").start()
    d = browser
    try:
        d.get(f"{srv.base}/")  # without the token: refused
        assert "token is required" in d.page_source
        d.get_log("browser")  # (that refusal's 401; the log is read and cleared)
        d.get(f"{srv.base}/?token={TOKEN}")
        _wait(d, "document.getElementById('f-dataset').options.length > 0")
        Select(d.find_element(By.ID, "f-dataset")).select_by_value("two-spirals")
        Select(d.find_element(By.ID, "f-preset")).select_by_value("fahlman-spirals")
        every = d.find_element(By.ID, "f-every")
        every.clear()
        every.send_keys("1")
        d.find_element(By.ID, "f-start").click()
        _wait(d, "cascor.status === 'running' && cascor.installs >= 2 && cascor.outputEpochs > 20")
        rid = d.execute_script("return cascor.selected")
        # the curve, the candidates' chart, the cascade and the boundary are drawn
        assert d.find_elements(By.CSS_SELECTOR, "#curve canvas") and d.find_elements(By.CSS_SELECTOR, "#cand canvas")
        _wait(d, "document.querySelectorAll('#cascade rect.unit').length >= 2")
        _wait(d, "cascor.boundaryEpoch !== null")
        d.find_element(By.ID, "b-pause").click()
        _wait(d, "cascor.status === 'paused'")
        paused_units = d.execute_script("return cascor.installs")
        assert int(d.find_element(By.ID, "units").text) == paused_units
        assert len(d.find_elements(By.CSS_SELECTOR, "#installs li")) == paused_units
        # the boundary is redrawn from the snapshot the pause wrote
        _wait(d, "cascor.boundaryEpoch === Number(document.getElementById('epoch').textContent)", 30)
        d.save_screenshot(os.path.join(artefacts, "service-paused.png"))
        d.find_element(By.ID, "b-resume").click()
        _wait(d, "cascor.status === 'running' || cascor.status === 'finished'")
        _wait(d, "cascor.installs > %d" % paused_units)
        d.find_element(By.ID, "b-pause").click()
        _wait(d, "cascor.status === 'paused'")
        # branch from the newest snapshot with room for more units: the page follows the new run
        Select(d.find_element(By.ID, "snapshots")).select_by_value("latest.h5")
        d.find_element(By.ID, "b-branch").click()
        _wait(d, f"cascor.selected !== '{rid}' && cascor.status === 'running'")
        branch = d.execute_script("return cascor.selected")
        _wait(d, "cascor.installs >= 1 && cascor.outputEpochs > 0")
        d.save_screenshot(os.path.join(artefacts, "service-branch.png"))
        d.find_element(By.ID, "b-stop").click()
        _wait(d, "cascor.status === 'stopped'")
        status, record = srv.get(f"/api/runs/{branch}")
        assert record["parent"]["run"] == rid and record["status"] == "stopped"
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        assert d.execute_script("return cascor.errors") == []
    finally:
        srv.stop()
