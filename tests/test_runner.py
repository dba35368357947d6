"""The Dask-side block runner, exercised in-process: its stream of epochs computed ahead must
give exactly what the pure task gives for the same epochs, and refuse anything else."""

import threading
import time

import numpy as np
import pytest

from cascor.parallel import DaskBackend
from cascor.parallel.runner import BlockRunner
from cascor.parallel.work import BLOCK_KEYS, advance_blocks

P, F, O, C = 300, 6, 2, 8


def _round(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(P, F)).astype(np.float32)
    Ec = rng.normal(size=(P, O)).astype(np.float32) / P
    blocks = [{"plan": [["symmetric_sigmoid", 1.0]] * (C // 2) + [["gaussian", 1.0]] * (C // 2),
               "weights": rng.uniform(-1, 1, size=(C, F)).astype(np.float32),
               "delta": np.zeros((C, F), np.float32), "prev_slope": np.zeros((C, F), np.float32),
               "prev_cor": np.zeros((C, O), np.float32)} for _ in range(2)]
    shared = {"X": X, "kind": "covariance", "Ec": Ec, "EcT": np.ascontiguousarray(Ec.T), "X_key": ["k", F]}
    return shared, blocks


def _params(start, epochs, max_epochs=40):
    return {"epochs": epochs, "measure_first": start == 0, "eps": 0.5, "eps_out": 0.0, "mu": 1.75, "decay": 0.0,
            "start": start, "max_epochs": max_epochs - start}


def _message(shared):
    return DaskBackend._message(shared, None)


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert np.array_equal(x[k], y[k]), k


def _continue(blocks, results):
    return [dict(b, **{k: r[k] for k in BLOCK_KEYS}) for b, r in zip(blocks, results)]


def test_stream_chunks_equal_the_pure_task_for_the_same_epochs():
    shared, blocks = _round()
    runner = BlockRunner()
    runner.begin(1, _message(shared))
    first = runner.run(1, blocks, _params(0, 3))
    _assert_same(first, advance_blocks(shared, blocks, _params(0, 3)))
    second = runner.run(1, None, _params(3, 5))
    _assert_same(second, advance_blocks(shared, _continue(blocks, first), _params(3, 5)))
    # ...and the two chunks together are the same 8 epochs computed in one go.
    whole = advance_blocks(shared, blocks, _params(0, 8))
    for w, a, b in zip(whole, first, second):
        assert np.array_equal(w["scores"], np.concatenate([a["scores"], b["scores"]]))
        assert np.array_equal(w["weights"], b["weights"])
    runner.end(1)


def test_stream_refuses_a_chunk_it_has_not_computed():
    shared, blocks = _round()
    runner = BlockRunner()
    runner.begin(1, _message(shared))
    runner.run(1, blocks, _params(0, 2, max_epochs=10))
    with pytest.raises(RuntimeError, match="stream is at pass 2"):
        runner.run(1, None, _params(3, 2, max_epochs=10))  # skips pass 2
    with pytest.raises(RuntimeError, match="stream is at pass 2"):
        runner.run(1, None, dict(_params(2, 2, max_epochs=10), eps=0.25))  # another step size
    with pytest.raises(RuntimeError, match="stream is at pass 2"):
        runner.run(1, None, _params(2, 9, max_epochs=10))  # past the phase's epoch cap
    with pytest.raises(RuntimeError, match="round 1, not of round 2"):
        runner.run(2, None, _params(2, 2, max_epochs=10))
    fresh = BlockRunner()
    fresh.begin(1, _message(shared))
    with pytest.raises(RuntimeError, match="no stream"):
        fresh.run(1, None, _params(0, 2))
    runner.end(1)


def test_inputs_are_extended_by_the_new_columns_only():
    shared, blocks = _round()
    X = shared["X"]
    runner = BlockRunner()
    runner.begin(1, DaskBackend._message(dict(shared, X=X[:, :4], X_key=["k", 4]), None))
    message = DaskBackend._message(shared, ("k", 4))
    assert "X" not in message and message["X_tail"].shape == (P, 2) and "EcT" not in message
    runner.begin(2, message)
    assert np.array_equal(runner._shared["X"], X)
    assert np.array_equal(runner._shared["EcT"], shared["EcT"])
    _assert_same(runner.run(2, blocks, _params(0, 2)), advance_blocks(shared, blocks, _params(0, 2)))
    assert "X" not in DaskBackend._message(shared, ("k", F)) and "X_tail" not in DaskBackend._message(shared, ("k", F))
    assert "X" in DaskBackend._message(shared, ("other run", 4))
    with pytest.raises(RuntimeError, match=r"holds inputs \('k', 6\)"):
        runner.begin(3, dict(DaskBackend._message(shared, ("k", 4)), X_key=("k", 9)))


def _streams():
    return [t for t in threading.enumerate() if t.name == "cascor-block-stream"]


def test_end_stops_computing_ahead():
    shared, blocks = _round()
    runner = BlockRunner()
    runner.begin(1, _message(shared))
    runner.run(1, blocks, _params(0, 1, max_epochs=100000))
    assert _streams()
    runner.end(1)
    assert not _streams()
    with pytest.raises(RuntimeError, match="holds the inputs of round None"):
        runner.run(1, None, _params(1, 1, max_epochs=100000))


def test_a_failing_epoch_is_reported_by_the_next_chunk():
    shared, blocks = _round()
    runner = BlockRunner()
    runner.begin(1, dict(_message(shared), Ec=np.zeros((P + 1, O), np.float32)))  # residuals of another size
    with pytest.raises(RuntimeError, match="computing pass 0 failed"):
        runner.run(1, blocks, _params(0, 2))
    deadline = time.monotonic() + 10
    while _streams() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _streams()


def test_a_line_carries_small_and_large_messages_and_serves_a_runner():
    """The framing of a direct line (channel.py), over a real socket pair: requests, a chunk's
    answer, a round's whole inputs (> 64 KB, sent as header then body), refusals and the end."""
    import socket

    from cascor.parallel.channel import Channel, RunnerLink, serve

    ours, theirs = socket.socketpair()
    a, b = Channel(ours), Channel(theirs)
    big = np.arange(300_000, dtype=np.float32)  # 1.2 MB
    sender = threading.Thread(target=lambda: (a.send(("small", 1)), a.send(big)))  # > the socket's buffer
    sender.start()
    assert b.poll(10) and b.recv() == ("small", 1)
    assert np.array_equal(b.recv(), big)
    sender.join()
    assert not b.poll(0.01)
    b.send_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="100 bytes where at most 32"):
        a.recv_bytes(limit=32)

    # serve() behind one end, a RunnerLink at the other: the same answers as calling the runner.
    ours, theirs = socket.socketpair()
    shared, blocks = _round()
    thread = threading.Thread(target=serve, args=(Channel(theirs), BlockRunner()), daemon=True)
    thread.start()
    link = RunnerLink(Channel(ours), "test runner")
    message = {k: shared[k] for k in ("kind", "Ec", "X", "X_key")}
    link.send("run", (1, blocks, _params(0, 3), message))
    got = link.receive(30)
    want = advance_blocks(shared, blocks, _params(0, 3))
    for g, w in zip(got, want):
        assert all(np.array_equal(g[k], w[k]) for k in BLOCK_KEYS)
    link.send("close", ())
    with pytest.raises(RuntimeError, match="test runner: ValueError: unknown request 'close'"):
        link.receive(30)
    link.close()  # the runner stops and the thread ends
    thread.join(10)
    assert not thread.is_alive()


def test_a_line_polls_descriptors_above_1024():
    """select() refuses descriptors >= FD_SETSIZE; a driver with many files open must still wait."""
    import os
    import resource
    import socket

    from cascor.parallel.channel import Channel

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 1050)
    try:
        a = Channel(socket.socket(fileno=high))
        assert not a.poll(0.01)
        Channel(theirs).send(("hello", 1))
        assert a.poll(5) and a.recv() == ("hello", 1)
        a.close()
    finally:
        ours.close()
        theirs.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
