"""``candidate_rows`` on large data: fit time and held-out quality, side by side in one process.

    python benchmarks/candidate_rows.py --pool mixed        # three 100k-row sets, rows 0 / 32768 / 16384
    python benchmarks/candidate_rows.py --rows 0 32768 --only scale --seed 2

Each set is split once (80/20, stratified for classification; ``--seed`` picks the split), the
training part standardised (``StandardScaler``, as a pipeline would), and the default estimator
(``CascorClassifier`` / ``CascorRegressor``, one cascade: these sets are above the averaging
cap) fitted with each ``candidate_rows`` value in turn, one torch thread, the first value (0:
every row) being the baseline the others are compared with. ``--pool mixed`` pins the preset's
candidate pool, so that only ``candidate_rows`` changes; ``--pool auto`` (the default) lets the
estimators choose it on the held-out rows as they do by default (two runs per fit). Printed per fit: seconds and the
ratio to the baseline, hidden units, test accuracy (R² for regression) and log-loss. The sets:
the generalisation benchmark's scale row (make_classification 100k x 20, 10 informative,
random_state 0), a 4-class make_classification(100k, 15 features, 6 informative, random_state 7)
and make_friedman1(100k, noise 1, random_state 0).
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import make_classification, make_friedman1
from sklearn.metrics import accuracy_score, log_loss, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from cascor.config import preset
from cascor.sklearn import CascorClassifier, CascorRegressor


def datasets():
    return {
        "scale": ("clf",) + make_classification(100_000, n_features=20, n_informative=10, random_state=0),
        "4-class": ("clf",) + make_classification(100_000, n_features=15, n_informative=6, n_classes=4,
                                                  random_state=7),
        "friedman1": ("reg",) + make_friedman1(100_000, noise=1.0, random_state=0),
    }


def fit_one(kind, rows, seed, pool, Xtr, ytr, Xte, yte) -> dict:
    pinned = None if pool == "auto" else list(preset("default").candidate_activations)
    est = (CascorClassifier if kind == "clf" else CascorRegressor)(random_state=seed, candidate_rows=rows,
                                                                   candidate_activations=pinned)
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    out = {"fit_s": time.perf_counter() - t0, "units": est.n_hidden_units_}
    if kind == "clf":
        out["score"] = accuracy_score(yte, est.predict(Xte))
        out["log_loss"] = log_loss(yte, est.predict_proba(Xte), labels=est.classes_)
    else:
        out["score"] = r2_score(yte, est.predict(Xte))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[0, 32768, 16384], help="candidate_rows values (first: baseline)")
    ap.add_argument("--only", nargs="+", help="sets to run (scale, 4-class, friedman1)")
    ap.add_argument("--seed", type=int, default=1, help="the split's and the estimators' seed")
    ap.add_argument("--pool", choices=["auto", "mixed"], default="auto",
                    help="auto: the estimators choose the candidate pool; mixed: the preset's pool, pinned")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| data | candidate_rows | fit s | vs baseline | units | accuracy / R² | log-loss |")
    print("|---|---|---|---|---|---|---|")
    for name, (kind, X, y) in datasets().items():
        if args.only and name not in args.only:
            continue
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=args.seed,
                                              stratify=y if kind == "clf" else None)
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        base = None
        for rows in args.rows:
            r = fit_one(kind, rows, args.seed, args.pool, Xtr, ytr, Xte, yte)
            base = base or r["fit_s"]
            ll = f"{r['log_loss']:.4f}" if "log_loss" in r else "-"
            print(f"| {name} | {rows or 'all'} | {r['fit_s']:.1f} | {r['fit_s'] / base:.2f} | {r['units']} | "
                  f"{r['score']:.4f} | {ll} |", flush=True)


if __name__ == "__main__":
    main()
