"""The package as a user gets it: build the wheel and the sdist, install the wheel into a fresh
venv without the project's constraints file (torch pinned to the local build), run the demo from
the installed command, and run tests shipped in the sdist against the installed wheel.

Minutes of pip work, so behind the ``packaging`` marker; .ci/run runs it (``pytest -m packaging``).
"""

import glob
import os
import re
import subprocess
import sys
import tarfile

import pytest

pytestmark = pytest.mark.packaging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1200, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _venv(path):
    _run([sys.executable, "-m", "venv", str(path)])
    return str(path / "bin" / "python")


def test_wheel_and_sdist_install_run_the_demo_and_the_shipped_tests(tmp_path):
    builder = _venv(tmp_path / "build-env")
    _run([builder, "-m", "pip", "install", "--quiet", "build"])
    dist = tmp_path / "dist"
    _run([builder, "-m", "build", "--outdir", str(dist), ROOT])
    wheels, sdists = glob.glob(str(dist / "*.whl")), glob.glob(str(dist / "*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, os.listdir(dist)

    # A user's install: no constraints file, torch pinned (the local CPU build), the test extra's
    # tools for the shipped tests.
    py = _venv(tmp_path / "user-env")
    _run([py, "-m", "pip", "install", "--quiet", "torch==2.13.0", wheels[0], "pytest", "pytest-timeout"])
    version = _run([py, "-c", "import cascor, sys; print(cascor.__version__, cascor.__file__)"]).stdout.split()
    assert "site-packages" in version[1]  # the wheel, not the source tree
    cascor = str(tmp_path / "user-env" / "bin" / "cascor")
    demo = _run([cascor, "demo", "--out", str(tmp_path / "demo")], cwd=str(tmp_path))
    assert "byte-identical to the uninterrupted run" in demo.stdout + demo.stderr
    assert _run([cascor, "--version"]).stdout.strip().endswith(version[0])

    # The sdist carries the tests, their golden files and the docs.
    with tarfile.open(sdists[0]) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "sdist", filter="data")
    top = os.path.join(str(tmp_path / "sdist"), names[0].split("/")[0])
    for needed in ("tests/test_golden.py", "tests/fixtures/v1.6/golden.json", "tests/fixtures/v1.5/golden.json", "tests/fixtures/v1.4/golden.json",
                   "tests/fixtures/v1.3/golden.json",
                   "tests/fixtures/v1.2/golden.json",
                   "docs/snapshot-format.md",
                   "benchmarks/generalisation.py", "README.md", "CHANGELOG.md"):
        assert os.path.exists(os.path.join(top, needed)), needed
    # Against the installed wheel (run from the sdist's folder; its src/ is not on the path).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    tests = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_config.py", "tests/test_golden.py",
                  "tests/test_validation.py", "-k", "not cli"], cwd=top, env=env)
    assert " passed" in tests.stdout and not re.search(r"\b\d+ failed", tests.stdout)


def _lower_bounds(extras=()):
    """{name: version} of every dependency's declared lower bound in pyproject.toml (and the
    named extras')."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    out = {}
    for dep in deps:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep)
        assert m, f"dependency without a lower bound: {dep}"
        out[m.group(1)] = m.group(2)
    return out


@pytest.mark.timeout(1800)  # pip installs plus four test modules in the old venv: over the default 300 s
def test_declared_lower_bounds_hold(tmp_path):
    """The oldest release series the package declares it accepts, installed together, pass the
    core tests. torch is the exception: only the local 2.13.0 build installs without gigabytes of
    download, so its bound (2.2) rests on the API cascor uses (no newer call), not on a run."""
    bounds = _lower_bounds(("export", "track", "serve"))
    pins = [f"{name}=={version}.*" for name, version in bounds.items() if name != "torch"]
    py = _venv(tmp_path / "old-env")
    _run([py, "-m", "pip", "install", "--quiet", "torch==2.13.0", *pins, "pytest", "pytest-timeout"])
    _run([py, "-m", "pip", "install", "--quiet", "--no-deps", ROOT])
    got = _run([py, "-c", "import numpy, h5py, sklearn, matplotlib, click, tqdm; print(numpy.__version__, "
                "h5py.__version__, sklearn.__version__, matplotlib.__version__)"]).stdout.split()
    for (name, version), found in zip((("numpy", bounds["numpy"]), ("h5py", bounds["h5py"]),
                                        ("scikit-learn", bounds["scikit-learn"]), ("matplotlib", bounds["matplotlib"])),
                                       got):
        assert found.startswith(version + "."), (name, version, found)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # (test_quickprop and test_candidates: the engine's NumPy paths equal torch's to the bit with
    # the oldest NumPy too, and derived_seeds equals its SeedSequence)
    tests = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "tests/test_config.py", "tests/test_engine.py",
                  "tests/test_golden.py", "tests/test_sklearn.py", "tests/test_validation.py", "tests/test_quickprop.py",
                  "tests/test_candidates.py", "-k", "not cli"],
                 cwd=ROOT, env=env)
    assert " passed" in tests.stdout and not re.search(r"\b\d+ failed", tests.stdout)
    # the export and track extras at their bounds (onnx, onnxruntime, tensorboard): every format
    # and the TensorBoard reader (MLflow is not in an extra: its test skips here)
    got = _run([py, "-c", "import onnx, onnxruntime, tensorboard; print(onnx.__version__, onnxruntime.__version__, "
                "tensorboard.__version__)"]).stdout.split()
    for name, found in zip(("onnx", "onnxruntime", "tensorboard"), got):
        assert found.startswith(bounds[name] + "."), (name, bounds[name], found)
    # and the serve extra's (fastapi, pydantic, uvicorn, websockets): the service's API tests
    got = _run([py, "-c", "import fastapi, pydantic, uvicorn, websockets; print(fastapi.__version__, "
                "pydantic.VERSION, uvicorn.__version__, websockets.__version__)"]).stdout.split()
    for name, found in zip(("fastapi", "pydantic", "uvicorn", "websockets"), got):
        assert found.startswith(bounds[name] + "."), (name, bounds[name], found)
    tests = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "tests/test_export.py",
                  "tests/test_tracking.py", "tests/test_service.py"], cwd=ROOT, env=env)
    assert " passed" in tests.stdout and not re.search(r"\b\d+ failed", tests.stdout)
