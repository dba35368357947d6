"""Generalisation on data nobody tuned for: cascor's defaults next to what users would pick instead.

Repeated stratified 5-fold cross-validation (plain KFold for regression), the same folds and
the same preprocessing (StandardScaler inside each estimator's pipeline; regression targets
standardised for the MLP and the SVR, as cascor does internally) for every estimator, in one
process, single-threaded. Two-spirals is scored on its interleaved test set (one fit per seed).

    python benchmarks/generalisation.py                 # 3 repeats (the issue's protocol)
    python benchmarks/generalisation.py --repeats 1 --only moons,diabetes
    python benchmarks/generalisation.py --json out.json
    python benchmarks/generalisation.py --only scale   # make_classification 100k x 20 (10 informative), one 80/20 split

Columns: accuracy or R^2 (mean +- std over folds), log-loss and Brier score (classifiers with
probabilities), hidden units, mean fit seconds per fold.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine, make_circles,
                              make_classification, make_friedman1, make_moons)
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, r2_score
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from threadpoolctl import threadpool_limits

from cascor.datasets import two_spirals
from cascor.sklearn import CascorClassifier, CascorRegressor


def datasets():
    X, y = make_classification(5000, n_features=20, n_informative=5, n_classes=3, random_state=0)
    return {
        "iris": ("clf",) + load_iris(return_X_y=True),
        "wine": ("clf",) + load_wine(return_X_y=True),
        "breast_cancer": ("clf",) + load_breast_cancer(return_X_y=True),
        "digits": ("clf",) + load_digits(return_X_y=True),
        "moons": ("clf",) + make_moons(1000, noise=0.3, random_state=0),
        "circles": ("clf",) + make_circles(1000, noise=0.1, factor=0.5, random_state=0),
        "classification": ("clf", X, y),
        "two-spirals": ("spirals", None, None),
        "diabetes": ("reg",) + load_diabetes(return_X_y=True),
        "friedman1": ("reg",) + make_friedman1(2000, random_state=0),
        "scale": ("scale",) + make_classification(100_000, n_features=20, n_informative=10, random_state=0),
    }


def estimators(kind: str, seed: int, variants: list[str]):
    if kind == "reg":
        def scaled(est):
            return TransformedTargetRegressor(make_pipeline(StandardScaler(), est), transformer=StandardScaler())

        out = {"cascor": make_pipeline(StandardScaler(), CascorRegressor(random_state=seed)),
               "cascor (no early stop)": make_pipeline(StandardScaler(), CascorRegressor(random_state=seed,
                                                                                        early_stopping=False)),
               "MLP": scaled(MLPRegressor(random_state=seed, max_iter=1000)),
               "MLP early stop": scaled(MLPRegressor(random_state=seed, max_iter=1000, early_stopping=True)),
               "HistGB": HistGradientBoostingRegressor(random_state=seed),
               "SVR": scaled(SVR())}
    else:
        out = {"cascor": make_pipeline(StandardScaler(), CascorClassifier(random_state=seed)),
               "cascor (no early stop)": make_pipeline(StandardScaler(), CascorClassifier(random_state=seed,
                                                                                         early_stopping=False)),
               "MLP": make_pipeline(StandardScaler(), MLPClassifier(random_state=seed, max_iter=1000)),
               "MLP early stop": make_pipeline(StandardScaler(), MLPClassifier(random_state=seed, max_iter=1000,
                                                                               early_stopping=True)),
               "HistGB": HistGradientBoostingClassifier(random_state=seed),
               "SVC": make_pipeline(StandardScaler(), SVC(probability=True, random_state=seed))}
    for name, params in (v.split("=", 1) for v in variants):
        # --variant 'name=key:value,key:value' adds a cascor with those parameters (';' between
        # them instead when a value is a JSON list: 'name=key:["a","b"];key:1')
        kw = {k: json.loads(v) for k, v in (p.split(":", 1) for p in params.split(";" if ";" in params else ","))}
        cls = CascorRegressor if kind == "reg" else CascorClassifier
        out[name] = make_pipeline(StandardScaler(), cls(random_state=seed, **kw))
    if CASCOR_ONLY:
        out = {k: v for k, v in out.items() if k == "cascor" or k in [v.split("=")[0] for v in variants]}
    return out


CASCOR_ONLY = False  # --cascor-only: the default cascor and the variants, for a variant study


def hidden_units(est) -> int | None:
    inner = est.regressor_ if hasattr(est, "regressor_") else est
    last = inner[-1] if hasattr(inner, "steps") else inner
    if hasattr(last, "n_hidden_units_"):
        return last.n_hidden_units_
    if hasattr(last, "hidden_layer_sizes"):
        return int(np.sum(last.hidden_layer_sizes))
    return None


def measure(est, kind, Xtr, ytr, Xte, yte) -> dict:
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    row = {"fit_s": time.perf_counter() - t0, "units": hidden_units(est)}
    if kind == "reg":
        row["score"] = r2_score(yte, est.predict(Xte))
        return row
    row["score"] = accuracy_score(yte, est.predict(Xte))
    if hasattr(est, "predict_proba"):
        p = est.predict_proba(Xte)
        classes = est.classes_
        row["log_loss"] = log_loss(yte, p, labels=classes)
        onehot = (np.asarray(yte)[:, None] == classes[None, :]).astype(float)
        row["brier"] = float(np.mean(np.sum((p - onehot) ** 2, axis=1))) if len(classes) > 2 else \
            brier_score_loss(yte == classes[1], p[:, 1])
    return row


def run(name, kind, X, y, repeats, seed, variants, log):
    rows: dict[str, list] = {}
    if kind == "scale":
        # One split (each fit takes a minute or more): cascor's default next to MLP(early_stopping),
        # the variant scikit-learn users pick at this size.
        from sklearn.model_selection import train_test_split

        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
        for est_name, est in estimators("clf", seed, variants).items():
            if est_name in ("cascor", "MLP early stop", "HistGB") or est_name in [v.split("=")[0] for v in variants]:
                rows.setdefault(est_name, []).append(measure(est, "clf", Xtr, ytr, Xte, yte))
                log(f"  {name}: {est_name} {rows[est_name][-1]}")
        return rows
    if kind == "spirals":
        ds = two_spirals(test=True)
        for r in range(repeats * 5):
            for est_name, est in estimators("clf", seed + r, variants).items():
                rows.setdefault(est_name, []).append(measure(est, "clf", ds.X, ds.y, ds.X_test, ds.y_test))
        return rows
    cv = (RepeatedKFold(n_splits=5, n_repeats=repeats, random_state=seed) if kind == "reg"
          else RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=seed))
    for i, (tr, te) in enumerate(cv.split(X, y)):
        for est_name, est in estimators(kind, seed + i, variants).items():
            rows.setdefault(est_name, []).append(measure(est, kind, X[tr], y[tr], X[te], y[te]))
        log(f"  {name}: fold {i + 1} done")
    return rows


def summarise(rows: dict) -> dict:
    out = {}
    for est, rs in rows.items():
        s = {"score": float(np.mean([r["score"] for r in rs])), "score_std": float(np.std([r["score"] for r in rs])),
             "fit_s": float(np.mean([r["fit_s"] for r in rs])), "n": len(rs)}
        units = [r["units"] for r in rs if r["units"] is not None]
        s["units"] = float(np.mean(units)) if units else None
        for k in ("log_loss", "brier"):
            if all(k in r for r in rs):
                s[k] = float(np.mean([r[k] for r in rs]))
        out[est] = s
    return out


def table(results: dict) -> str:
    lines = ["| data | estimator | accuracy / R² | log-loss | Brier | hidden units | fit s |", "|---|---|---|---|---|---|---|"]
    for data, ests in results.items():
        for est, s in ests.items():
            f = lambda k, fmt: (fmt % s[k]) if s.get(k) is not None else "—"  # noqa: E731
            lines.append(f"| {data} | {est} | {s['score']:.3f} ± {s['score_std']:.3f} | {f('log_loss', '%.3f')} | "
                         f"{f('brier', '%.3f')} | {f('units', '%.1f')} | {s['fit_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated dataset names")
    ap.add_argument("--variant", action="append", default=[], help="extra cascor: 'name=param:json,param:json'")
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--cascor-only", action="store_true", help="only cascor's default and the --variant ones")
    args = ap.parse_args()
    global CASCOR_ONLY
    CASCOR_ONLY = args.cascor_only
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)  # SVC(probability=True), deprecated in 1.9
    only = {s for s in args.only.split(",") if s}
    results = {}
    with threadpool_limits(1):
        for name, (kind, X, y) in datasets().items():
            if (only and name not in only) or (name == "scale" and name not in only):
                continue  # the scale row only when asked for
            t0 = time.perf_counter()
            results[name] = summarise(run(name, kind, X, y, args.repeats, args.seed, args.variant,
                                          lambda m: print(m, flush=True)))
            print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
            if args.json:
                with open(args.json, "w") as fh:
                    json.dump(results, fh, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
