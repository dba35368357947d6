"""Parallel backends produce bit-identical networks: real processes, a real Dask LocalCluster and a
real `dask scheduler` + `dask worker` topology on loopback, including faults."""

import gc
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from cliutil import cascor_here, last_json

from cascor import snapshot, trainer
from cascor.config import preset
from cascor.errors import ConfigError
from cascor.parallel import DaskBackend, make_backend
from cascor.parallel.channel import Channel, RunnerLink
from cascor.parallel.dask_cluster import DaskBlockRunner, _ActorLink
from cascor.snapshot import encode_state
from cascor.snapshot.format import tensor_digest

pytestmark = pytest.mark.distributed


def _data(P=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(P, 6)).astype(np.float32)
    Y = np.stack([np.sin(X[:, 0] * X[:, 1]), np.cos(X[:, 2] + X[:, 3])], 1).astype(np.float32) * 0.4
    return X, Y


COV = preset("cascor1c").replace(seed=3, pool_size=32, candidate_block=8, max_units=3, score_threshold=0.2)
CAS2 = preset("fann-cascade2").replace(seed=4, pool_size=24, candidate_block=8, max_units=2, score_threshold=0.2)


def _content(engine):
    meta, arrays = encode_state(engine.state.state_dict())
    return json.dumps(meta, sort_keys=True), {k: tensor_digest(v) for k, v in arrays.items()}


def _train(cfg, backend=None, **kw):
    X, Y = _data()
    eng = trainer.start(cfg, X, Y, backend=backend)
    trainer.run(eng, **kw)
    return eng


@pytest.fixture(scope="module")
def local_results():
    return {name: _content(_train(cfg)) for name, cfg in (("cov", COV), ("cas2", CAS2))}


def test_processes_backend_identical_to_local(local_results):
    backend = make_backend("processes", workers=2)
    try:
        for name, cfg in (("cov", COV), ("cas2", CAS2)):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no silent local fallback
                eng = _train(cfg, backend)
            assert eng.state.network.n_hidden >= 1
            assert _content(eng) == local_results[name]
        assert backend.chunks["runner"] > 0 and backend.chunks["runner_start"] > 0
        assert backend.chunks["local"] == 0
        workers = [w.proc for w in backend._runners]
        assert len(workers) == 2 and all(p.poll() is None for p in workers)
    finally:
        backend.close()
    assert all(p.wait(timeout=10) == 0 for p in workers)  # closed, not killed


def test_input_l2_identical_on_the_processes_backend():
    """The candidates' residual-scaled decay reaches the workers: same network as in-process."""
    cfg = COV.replace(input_l2=0.05)
    local = _content(_train(cfg))
    backend = make_backend("processes", workers=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            eng = _train(cfg, backend)
        assert backend.chunks["runner"] > 0
    finally:
        backend.close()
    assert _content(eng) == local


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_candidate_rows_identical_on_the_distributed_backends(kind):
    """Each phase's subset of rows (new every unit, so it travels whole) reaches the workers: the
    same networks as in-process, covariance and Cascade 2 candidates."""
    cases = [COV.replace(candidate_rows=1000), CAS2.replace(candidate_rows=900)]
    local = [_content(_train(cfg)) for cfg in cases]
    backend = make_backend("processes", workers=2) if kind == "processes" else DaskBackend(workers=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = [_content(_train(cfg, backend)) for cfg in cases]
        assert backend.chunks["runner"] > 0 and backend.chunks["local"] == 0
    finally:
        backend.close()
    assert got == local


def test_processes_worker_killed_mid_round(local_results):
    backend = make_backend("processes", workers=2)
    killed = []

    def kill_a_worker(engine, event):
        if event == "candidates" and not killed:
            victim = backend._runners[1].proc
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            killed.append(victim)

    try:
        with pytest.warns(RuntimeWarning, match="in-process"):
            eng = _train(COV, backend, callbacks=[kill_a_worker])
        assert killed and killed[0].returncode == -signal.SIGKILL
        assert backend.chunks["local"] > 0
        # Later rounds started new workers.
        assert backend._runners and killed[0] not in [w.proc for w in backend._runners]
        assert backend.chunks["runner_start"] > 1
    finally:
        backend.close()
    assert _content(eng) == local_results["cov"]


@pytest.mark.parametrize("direct", [True, False], ids=["direct-lines", "actor-calls"])
def test_dask_local_cluster_identical_to_local(local_results, direct):
    backend = DaskBackend(workers=2, direct_lines=direct)
    try:
        for name, cfg in (("cov", COV), ("cas2", CAS2)):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no silent local fallback
                eng = _train(cfg, backend)
            assert _content(eng) == local_results[name]
        # The fast path ran every chunk: runners, their streams continued between chunks.
        assert backend.chunks["runner"] > 0 and backend.chunks["runner_start"] > 0
        assert backend.chunks["tasks"] == backend.chunks["local"] == 0
        assert len(backend._runners) == 2
        assert all(isinstance(r, RunnerLink if direct else _ActorLink) for r in backend._runners)
        # Dask still holds each runner as an actor on its worker (not only our line): no handle
        # was dropped (collected, and its release given time to reach the workers).
        gc.collect()
        time.sleep(0.5)
        actors = backend._client.run(lambda dask_worker: len(dask_worker.state.actors))
        assert sorted(actors.values()) == [1, 1]
    finally:
        backend.close()


def test_a_runner_line_refuses_a_wrong_token_before_unpickling(tmp_path):
    """A stranger who finds a runner's port gets nothing unpickled; the driver's token works."""
    from distributed import Client, LocalCluster

    marker = tmp_path / "unpickled"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        actor = client.submit(DaskBlockRunner, actor=True, pure=False).result()
        for token, expect in ((b"x" * 32, "refused"), (b"t" * 32, "answered")):
            host, port = actor.listen(b"t" * 32).result(timeout=30)
            channel = Channel(socket.create_connection((host, port), timeout=10))
            try:
                channel.send_bytes(token)
                channel.send(_Mkdir(str(marker)))  # makes the directory if unpickled
                if expect == "refused":
                    with pytest.raises((EOFError, ConnectionError)):
                        channel.recv()
                    assert not marker.exists()
                else:  # a malformed request is answered with an error, and the line stays up
                    status, message = channel.recv()
                    assert status == "error" and "cannot unpack" in message
                    assert marker.is_dir()  # so the refused payload would have run
                    channel.send(("bogus", ()))
                    assert channel.recv() == ("error", "ValueError: unknown request 'bogus'")
            finally:
                channel.close()


class _Mkdir:
    """Unpickling this makes a directory (os.mkdir resolves on any worker)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_embedded_cluster_worker_killed_mid_round_gets_new_lines(local_results):
    """The nanny restarts a killed worker: the round finishes as Dask tasks, and later rounds
    open new direct lines to the workers there are then."""
    backend = DaskBackend(workers=2)
    killed = []

    def kill_a_worker(engine, event):
        if event == "candidates" and not killed and backend._runners:
            pids = backend._client.run(os.getpid)
            victim = pids[sorted(pids)[1]]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        elif event == "installed" and len(killed) == 1:
            backend._client.wait_for_workers(2, timeout=60)  # the nanny has restarted it
            killed.append("back")

    try:
        eng = _train(COV, backend, callbacks=[kill_a_worker])
        assert killed and backend.chunks["tasks"] > 0
        assert backend.chunks["runner_start"] > 1  # new runners after the fault
        assert len(backend._runners) == 2 and all(isinstance(r, RunnerLink) for r in backend._runners)
        assert killed[0] not in backend._client.run(os.getpid).values()
    finally:
        backend.close()
    assert _content(eng) == local_results["cov"]


class _BehindAFirewall(DaskBlockRunner):
    """A runner whose line cannot be reached: the port it names refuses connections."""

    def listen(self, token):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return "127.0.0.1", s.getsockname()[1]  # closed again: nothing listens there


def test_dask_without_a_direct_line_warns_and_uses_actor_calls(local_results):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests
    try:
        backend = DaskBackend(workers=2)
        backend.runner_class = _BehindAFirewall
        try:
            with pytest.warns(RuntimeWarning, match="no direct line to Dask worker .* using actor calls") as caught:
                eng = _train(COV, backend)
            assert len(caught) == 1  # once, not per round or per worker
            assert _content(eng) == local_results["cov"]
            assert all(isinstance(r, _ActorLink) for r in backend._runners)
            assert backend.chunks["runner"] > 0 and backend.chunks["tasks"] == backend.chunks["local"] == 0
        finally:
            backend.close()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_dask_over_tls_identical_to_local(local_results):
    """A cluster that requires TLS: its certificates secure the runners' direct lines too."""
    from distributed import LocalCluster
    from distributed.security import Security

    security = Security.temporary()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      security=security) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        backend = DaskBackend(scheduler=cluster.scheduler_address, security=security)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                eng = _train(COV, backend)
            assert _content(eng) == local_results["cov"]
            assert backend.chunks["runner"] > 0 and backend.chunks["tasks"] == backend.chunks["local"] == 0
            assert all(isinstance(r.channel.sock, ssl.SSLSocket) for r in backend._runners)
            assert backend.settings() == {"name": "dask", "workers": 2, "scheduler": cluster.scheduler_address}
        finally:
            backend.close()


class _EveryFifthEpoch:
    """A callback due every 5th epoch: distributed chunks stop there, and a chunk of one epoch
    runs in-process, so a runner's stream must restart from the driver's blocks."""

    def epochs_until_due(self, state):
        return 5 - state.counters.epoch % 5

    def __call__(self, engine, event):
        return False


def test_dask_streams_restart_after_epochs_computed_elsewhere(local_results):
    backend = DaskBackend(workers=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            eng = _train(COV, backend, callbacks=[_EveryFifthEpoch()])
        assert _content(eng) == local_results["cov"]
        # Each of the n_hidden rounds starts one stream; any more are restarts inside a round.
        # (How many depends on where the patience rule cuts chunks, i.e. on the trajectory,
        # which differs between CPUs whose float32 kernels differ: at least one, here.)
        assert backend.chunks["runner_start"] > eng.state.network.n_hidden
    finally:
        backend.close()


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, killed by PID in teardown."""
    sched_file = str(tmp_path / "scheduler.json")
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", sched_file],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not os.path.exists(sched_file) and time.time() < deadline:
            time.sleep(0.1)
        address = json.load(open(sched_file))["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                           "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        yield address, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()


def test_real_topology_with_a_worker_killed_mid_round(dask_cluster, local_results):
    address, procs = dask_cluster
    backend = DaskBackend(scheduler=address)
    assert backend.workers == 2 and backend.settings()["scheduler"] == address
    killed = []

    def kill_one_worker(engine, event):
        # After the first distributed chunk, while its runner computes ahead: the next chunk
        # (or round) finds the worker gone and runs as Dask tasks on the surviving one.
        if event == "candidates" and not killed:
            killed.append(procs[1].pid)
            procs[1].send_signal(signal.SIGKILL)
            procs[1].wait(timeout=10)

    try:
        eng = _train(COV, backend, callbacks=[kill_one_worker])
    finally:
        backend.close()
    assert killed and procs[1].returncode == -signal.SIGKILL
    assert backend.chunks["tasks"] > 0
    assert _content(eng) == local_results["cov"]


def test_a_worker_that_joins_later_gets_a_runner(dask_cluster, local_results):
    """Rounds that start with fewer workers than asked for use what there is; once a worker
    joins, the next round starts runners on every worker again."""
    address, procs = dask_cluster
    backend = DaskBackend(scheduler=address)
    runners_per_round = []

    def events(engine, event):
        if event == "candidates" and not runners_per_round:
            procs[2].send_signal(signal.SIGKILL)
            procs[2].wait(timeout=10)
            runners_per_round.append(len(backend._runners))
        elif event == "installed":
            runners_per_round.append(len(backend._runners))
            if len(runners_per_round) == 3:  # after the round that ran on the one worker left
                procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                               "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                               "--host", "127.0.0.1"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                backend._client.wait_for_workers(2, timeout=60)

    try:
        eng = _train(COV, backend, callbacks=[events])
        # round 1: 2 runners (one killed mid-round, so none left at its end); round 2: 1; round 3: 2.
        assert runners_per_round == [2, 0, 1, 2]
        assert all(isinstance(r, RunnerLink) for r in backend._runners)
    finally:
        backend.close()
    assert _content(eng) == local_results["cov"]


def test_every_worker_killed_falls_back_locally_soon(dask_cluster, local_results):
    address, procs = dask_cluster
    backend = DaskBackend(scheduler=address)
    backend.no_worker_timeout = 2.0  # instead of 30 s
    killed = []

    def kill_all_workers(engine, event):
        if event == "candidates" and not killed:
            for p in procs[1:]:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=10)
            killed.append(True)

    try:
        t0 = time.monotonic()
        with pytest.warns(RuntimeWarning) as caught:
            eng = _train(COV, backend, callbacks=[kill_all_workers])
        assert time.monotonic() - t0 < 60
        # The round in flight waited 2 s for a worker; later rounds did not wait.
        messages = {str(w.message) for w in caught}
        assert any("no workers for 2 s" in m for m in messages)
        assert all("no workers" in m for m in messages), messages
    finally:
        backend.close()
    assert killed and backend.chunks["local"] > 0
    assert _content(eng) == local_results["cov"]


def test_scheduler_gone_falls_back_locally_with_a_warning(dask_cluster, local_results):
    address, procs = dask_cluster
    backend = DaskBackend(scheduler=address)
    stopped = []

    def stop_scheduler(engine, event):
        if event == "candidates" and not stopped:
            stopped.append(True)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()

    try:
        with pytest.warns(RuntimeWarning, match="in-process"):
            eng = _train(COV, backend, callbacks=[stop_scheduler])
    finally:
        try:
            backend.close()
        except Exception:
            pass
    assert _content(eng) == local_results["cov"]


def test_snapshot_taken_on_dask_resumes_locally_identically(tmp_path, local_results):
    backend = DaskBackend(workers=2)
    X, Y = _data()
    try:
        eng = trainer.start(COV, X, Y, backend=backend)
        trainer.run(eng, stop_at_epoch=130)
        assert eng.state.counters.epoch == 130
        path = str(tmp_path / "mid.h5")
        snapshot.save(eng.state, path, backend=backend.settings())
    finally:
        backend.close()
    snap = snapshot.load(path)
    assert snap.backend == {"name": "dask", "workers": 2, "scheduler": None}
    rest = trainer.resume(snap.state, X, Y)  # on a laptop: local backend
    trainer.run(rest)
    assert _content(rest) == local_results["cov"]


def test_auto_policy_keeps_small_rounds_local():
    backend = make_backend("auto", workers=2)
    try:
        assert not backend.distributes(194, 8, 3, 1)  # two-spirals: one block, stays in-process
        assert not backend.distributes(194, 64, 15, 2)
        assert backend.distributes(20000, 128, 31, 4)
    finally:
        backend.close()


def test_missing_dask_is_a_clear_error():
    code = ("import sys\nsys.modules['distributed'] = None\n"
            "from cascor.parallel import make_backend\n"
            "try:\n    make_backend('dask')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ConfigError" in out.stdout and "pip install 'cascor[dask]'" in out.stdout
    with pytest.raises(ConfigError, match="credentials"):
        make_backend("dask", scheduler="tcp://user:secret@127.0.0.1:8786")
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("ray")


def test_cli_dask_run_resumes_on_local_backend_identically(tmp_path):
    X, Y = _data(P=800)
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=(Y[:, 0] > 0).astype(int))
    common = ["--data", str(data), "--preset", "cascor1c", "--seed", "5", "--set", "pool_size=16",
              "--set", "candidate_block=8", "--set", "max_units=3", "--json", "-q"]

    def cli(*args):
        # the Dask run in a process of its own (its cluster's processes and logging); the local
        # ones in this process (cliutil)
        if "dask" in args:
            proc = subprocess.run([sys.executable, "-m", "cascor", *args], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            return last_json(proc)
        return last_json(cascor_here(*args, check=True))

    full = cli("train", *common, "--out", str(tmp_path / "local"))
    part = cli("train", *common, "--out", str(tmp_path / "dask"), "--backend", "dask", "--workers", "2",
               "--stop-after", "60")
    info = last_json(cascor_here("snapshot", "inspect", part["snapshot"], "--json", check=True))
    assert info["backend"] == {"name": "dask", "workers": 2, "scheduler": None}
    rest = cli("resume", part["snapshot"], "--out", str(tmp_path / "dask"), "--backend", "local", "--json", "-q")
    assert (rest["epochs"], rest["hidden_units"]) == (full["epochs"], full["hidden_units"])
    from cascor.snapshot.diff import diff_snapshots

    report = diff_snapshots(str(tmp_path / "local" / "final.h5"), str(tmp_path / "dask" / "final.h5"))
    assert report["identical"], report["lines"]


_ORPHAN_CHILD = """
import sys, time
import numpy as np
from cascor import trainer
from cascor.config import preset
from cascor.parallel import make_backend
rng = np.random.default_rng(0)
X = rng.normal(size=(1500, 6)).astype(np.float32)
Y = np.tanh(X[:, :2]).astype(np.float32) * 0.4
backend = make_backend("processes", workers=2)
cfg = preset("cascor1c").replace(seed=3, pool_size=32, candidate_block=8, max_units=50, score_threshold=0.001,
                                 input_epochs=100000, input_patience=0)
eng = trainer.start(cfg, X, Y, backend=backend)
while not backend._runners:
    eng.step(5)  # chunks of 5 epochs: the runners compute the rest of the 100,000 ahead
print(" ".join(str(w.proc.pid) for w in backend._runners), flush=True)
time.sleep(600)
"""


def test_processes_workers_exit_when_the_training_process_is_killed():
    import psutil

    child = subprocess.Popen([sys.executable, "-c", _ORPHAN_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 2
        workers = [psutil.Process(p) for p in pids]
        assert all(w.is_running() for w in workers)
    finally:
        child.kill()
        child.wait()
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"orphaned workers: {alive}"
