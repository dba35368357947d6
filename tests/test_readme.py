"""Every command of the README, run as written (a user pastes them): the command-line block in
order in one folder, the backend block with its "..." filled in, and the Python block.

Behind the ``packaging`` marker (each command starts Python and torch: ~40 s); .ci/run runs it.
Not run here: `make demo` / `make test` (.ci/run runs both), the multi-machine block (a real
`dask scheduler` + `dask worker` run is tests/test_parallel.py's), and
`--scheduler tcp://10.0.0.5:8786` (an address for the reader's own cluster).
"""

import os
import re
import shlex
import subprocess
import sys

import pytest

pytestmark = pytest.mark.packaging

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _blocks(lang):
    text = open(README).read()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _commands(block):
    for line in block.splitlines():
        words = shlex.split(line, comments=True)  # as a shell reads it: "# ..." is a comment
        if words[:1] == ["cascor"]:
            yield shlex.join(words)


def _cascor(line, cwd):
    args = shlex.split(line)
    proc = subprocess.run([sys.executable, "-m", "cascor", *args[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
    return proc


def _user_files(folder):
    from sklearn.datasets import make_moons

    X, y = make_moons(400, noise=0.25, random_state=0)
    for name, rows in (("mydata.csv", slice(0, 300)), ("holdout.csv", slice(300, 400))):
        with open(os.path.join(folder, name), "w") as fh:
            fh.write("x1,x2,label\n")
            for (a, b), c in zip(X[rows], y[rows]):
                fh.write(f"{a:.6f},{b:.6f},{'yes' if c else 'no'}\n")


def test_command_line_block_runs_as_written(tmp_path):
    _user_files(tmp_path)
    block = next(b for b in _blocks("bash") if "cascor train --dataset two-spirals" in b)
    lines = list(_commands(block))
    assert len(lines) >= 10
    for line in lines:
        _cascor(line, str(tmp_path))
    assert (tmp_path / "boundary.png").exists() and (tmp_path / "runs" / "v" / "final.h5").exists()


def test_backend_block_runs_with_its_dots_filled_in(tmp_path):
    block = next(b for b in _blocks("bash") if "--backend local" in b)
    for i, line in enumerate(_commands(block)):
        if "10.0.0.5" in line:
            continue
        _cascor(line.replace("...", f"--dataset xor --out runs/b{i} -q"), str(tmp_path))


def test_python_block_runs(tmp_path):
    from cascor.datasets import encode_targets, two_spirals

    ds = two_spirals()
    code = next(b for b in _blocks("python") if "CascorClassifier" in b)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {"X": ds.X, "y": ds.y,
                                                    "Y": encode_targets(ds.y, ds.classes, -0.5, 0.5)})
    finally:
        os.chdir(cwd)
    assert (tmp_path / "clf.h5").exists() and (tmp_path / "s.h5").exists()


def test_serve_block_starts_the_printed_address(tmp_path):
    """The serve block's command as written (plus --port 0, so a real server on 8765 cannot
    collide with the test): the printed address, token included, opens the page."""
    import urllib.request

    block = next(b for b in _blocks("bash") if "cascor serve" in b)
    (line,) = [c for c in _commands(block) if c.startswith("cascor serve")]
    args = shlex.split(line)[1:] + ["--port", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "cascor", *args], cwd=str(tmp_path), stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stderr.readline()
        url = re.search(r"(http://\S+\?token=\S+)", first).group(1)
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b"<title>cascor</title>" in r.read()
        assert os.path.isdir(tmp_path / "runs")
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
