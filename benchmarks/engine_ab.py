"""This tree's engine against a baseline revision, in one process: fit time and bit-identity.

    python benchmarks/engine_ab.py                    # baseline: bd11769 (before session 16's speed work)
    python benchmarks/engine_ab.py --baseline HEAD~3 --repeats 7

The baseline's ``src/cascor`` is extracted with ``git archive`` into a temporary directory as a
package named ``cascor_base`` (cascor's modules import each other relatively, so the copy runs
as it was), and both versions fit the same data alternately (the order flips every repeat), one
torch thread. For each case it prints the median fit seconds of each and their ratio, and checks
that the two fits' predictions are equal to the bit: a change made for speed must not change a
single result (snapshot resume, golden files and every published figure depend on it).

Cases: the default estimators on one training fold of moons(1000, noise .3), iris and
circles(1000, noise .1, factor .5) -- the small fits whose time is mostly per-operation overhead
(5 averaged cascades on the first and third, 20 on iris) -- and the paper's preset on
two-spirals (``fahlman-spirals``, seed 1, training loop only).

``--identity`` runs, once each and untimed, a wider battery for the bit-identity check alone:
the four presets on two-spirals (two seeds, then with sample weights and weight decay), and the
estimators with ``input_l2``, ``class_weight``, a single cascade, and regressors with and
without held-out data. Run it after any change meant to keep results.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def extract(rev: str, into: str) -> None:
    tar = subprocess.run(["git", "-C", ROOT, "archive", rev, "src/cascor"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(into, filter="data")
    os.rename(os.path.join(into, "src", "cascor"), os.path.join(into, "cascor_base"))


def cases():
    from sklearn.datasets import load_iris, make_circles, make_moons
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    sets = {"moons": make_moons(1000, noise=0.3, random_state=0), "iris": load_iris(return_X_y=True),
            "circles": make_circles(1000, noise=0.1, factor=0.5, random_state=0)}
    for name, (X, y) in sets.items():
        tr, te = next(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
        scaler = StandardScaler().fit(X[tr])

        def fit(pkg, X=scaler.transform(X), y=y, tr=tr, te=te):
            est = pkg.sklearn.CascorClassifier(random_state=0)
            t0 = time.perf_counter()
            est.fit(X[tr], y[tr])
            return time.perf_counter() - t0, est.predict_proba(X[te])

        yield f"{name} (CascorClassifier defaults)", fit

    def spirals(pkg):
        ds = pkg.datasets.two_spirals()
        Y = pkg.datasets.encode_targets(ds.y, ds.classes, -0.5, 0.5)
        eng = pkg.trainer.start(pkg.config.preset("fahlman-spirals").replace(seed=1), ds.X, Y)
        report = pkg.trainer.run(eng)
        return report.seconds, eng.outputs().numpy()

    yield "two-spirals (fahlman-spirals, seed 1)", spirals


def identity_cases():
    from sklearn.datasets import load_digits, load_iris, make_friedman1, make_moons

    def spirals(name, seed, weighted):
        def run(pkg):
            ds = pkg.datasets.two_spirals()
            cfg = pkg.config.preset(name).replace(seed=seed, max_units=12)
            w = None
            if weighted:
                cfg = cfg.replace(max_units=5, input_decay=1e-4, **({} if name == "fann-cascade2" else {"output_decay": 1e-4}))
                w = None if name == "fann-cascade2" else np.linspace(0.2, 2.0, len(ds.y))  # (Cascade 2: unweighted)
            X, Y, info = pkg.workflow.targets_for(ds, cfg)
            eng = pkg.trainer.start(cfg, X, Y, targets=info, sample_weight=w)
            pkg.trainer.run(eng)
            return eng.state.network.output_weights.numpy(), eng.outputs().numpy()
        return run

    for name in ("fahlman-spirals", "default", "fann-cascade2", "cascor1c"):
        for seed in (1, 2):
            for weighted in (False, True):
                yield f"two-spirals {name} seed {seed}{' weighted, decay' if weighted else ''}", spirals(name, seed, weighted)
    Xm, ym = make_moons(600, noise=0.3, random_state=0)
    Xi, yi = load_iris(return_X_y=True)
    Xd, yd = load_digits(return_X_y=True)
    Xf, yf = make_friedman1(400, random_state=0)
    fits = [("moons, default", "CascorClassifier", {}, Xm, ym),
            ("moons, one cascade, input_l2 .03", "CascorClassifier", {"n_estimators": 1, "input_l2": 0.03}, Xm, ym),
            ("iris, default", "CascorClassifier", {}, Xi, yi),
            ("digits[:700], one cascade", "CascorClassifier", {"n_estimators": 1, "max_units": 6}, Xd[:700], yd[:700]),
            ("digits[:500], 2 cascades, class_weight", "CascorClassifier",
             {"n_estimators": 2, "class_weight": "balanced", "max_units": 4}, Xd[:500], yd[:500]),
            ("friedman1, regressor", "CascorRegressor", {"max_units": 10}, Xf, yf),
            ("friedman1[:150], regressor, no early stop", "CascorRegressor", {"max_units": 6, "early_stopping": False},
             Xf[:150], yf[:150])]
    for label, cls, kw, X, y in fits:
        def run(pkg, cls=cls, kw=kw, X=X, y=y):
            est = getattr(pkg.sklearn, cls)(random_state=3, **kw).fit(X, y)
            return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X), est.n_iter_
        yield label, run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="bd11769", help="git revision to compare against")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--identity", action="store_true", help="the wider bit-identity battery, untimed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="cascor-ab-") as tmp:
        extract(args.baseline, tmp)
        compare(args, tmp)


def compare(args, tmp: str) -> None:
    """Import the baseline extracted under ``tmp`` as ``cascor_base`` and run the cases."""
    sys.path.insert(0, tmp)
    modules = ("sklearn", "datasets", "trainer", "config", "workflow")
    new = {m: importlib.import_module(f"cascor.{m}") for m in modules}
    old = {m: importlib.import_module(f"cascor_base.{m}") for m in modules}
    pkgs = {"baseline": type("P", (), old), "this tree": type("P", (), new)}
    if args.identity:
        print(f"baseline {args.baseline} vs this tree: bit-identity of every result\n")
        different = 0
        for name, run in identity_cases():
            a, b = run(pkgs["baseline"]), run(pkgs["this tree"])
            same = all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a, b))
            different += not same
            print(f"{'identical' if same else 'DIFFERENT'}  {name}", flush=True)
        print(f"\n{different} of the cases differ")
        return
    print(f"baseline {args.baseline} vs this tree, {args.repeats} repeats, one torch thread\n")
    print("| case | baseline s | this tree s | ratio | identical |")
    print("|---|---|---|---|---|")
    for name, fit in cases():
        times = {k: [] for k in pkgs}
        same = True
        for r in range(args.repeats):
            order = list(pkgs) if r % 2 == 0 else list(pkgs)[::-1]
            results = {}
            for k in order:
                seconds, out = fit(pkgs[k])
                times[k].append(seconds)
                results[k] = out
            same &= np.asarray(results["baseline"]).tobytes() == np.asarray(results["this tree"]).tobytes()
        b, t = statistics.median(times["baseline"]), statistics.median(times["this tree"])
        print(f"| {name} | {b:.3f} | {t:.3f} | {t / b:.2f} | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
