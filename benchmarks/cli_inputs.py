"""`cascor train --data` on raw CSV files, as a user runs it: the run's own input standardisation
(the default since format 1.5) next to the columns as they are (`--no-scale-inputs`) and next to
files standardised by the user beforehand (the advice before 1.5), same folds, same run.

5 folds (stratified for classification, seed 0 unless --seed); each fold's training rows and test rows are
written as CSV files and given to `cascor train --data TRAIN --test TEST --seed FOLD` in a
subprocess; the table shows the mean test accuracy (R² for diabetes) and mean hidden units.

    python benchmarks/cli_inputs.py [--datasets wine,breast_cancer,diabetes] [--folds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

VARIANTS = {
    "scaled by the run (default)": ("raw", ()),
    "columns as they are": ("raw", ("--no-scale-inputs",)),
    "standardised by the user": ("standardised", ("--no-scale-inputs",)),
}


def load(name):
    from sklearn import datasets

    loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes, "iris": datasets.load_iris}[name]
    X, y = loader(return_X_y=True)
    return X, y, "regression" if name == "diabetes" else "classification"


def folds(y, task, n, seed):
    from sklearn.model_selection import KFold, StratifiedKFold

    split = StratifiedKFold(n, shuffle=True, random_state=seed) if task == "classification" else KFold(
        n, shuffle=True, random_state=seed)
    return list(split.split(np.zeros(len(y)), y))


def run(train, test, seed, extra):
    proc = subprocess.run([sys.executable, "-m", "cascor", "train", "--data", train, "--test", test, "--seed",
                           str(seed), "--out", tempfile.mkdtemp(prefix="cli-inputs-"), "--json", "-q", *extra],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="wine,breast_cancer,diabetes")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the folds' seed; fold k's run has seed SEED*100+k")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            X, y, task = load(name)
            key = "test_accuracy" if task == "classification" else "test_r2"
            scores = {v: [] for v in VARIANTS}
            units = {v: [] for v in VARIANTS}
            for k, (tr, te) in enumerate(folds(y, task, args.folds, args.seed)):
                mean, std = X[tr].mean(0), X[tr].std(0)
                std[std == 0] = 1.0
                files = {}
                for form, (A, B) in {"raw": (X[tr], X[te]),
                                     "standardised": ((X[tr] - mean) / std, (X[te] - mean) / std)}.items():
                    files[form] = []
                    for part, data, target in (("train", A, y[tr]), ("test", B, y[te])):
                        path = os.path.join(tmp, f"{name}-{k}-{form}-{part}.csv")
                        np.savetxt(path, np.column_stack([data, target]), delimiter=",", fmt="%.10g")
                        files[form].append(path)
                for variant, (form, extra) in VARIANTS.items():
                    summary = run(*files[form], args.seed * 100 + k, extra)
                    scores[variant].append(summary[key])
                    units[variant].append(summary["hidden_units"])
            rows.append((name, task, {v: (np.mean(scores[v]), np.mean(units[v])) for v in VARIANTS}))
            print(f"{name}: " + "; ".join(f"{v} {s:.3f} ({u:.1f} units)" for v, (s, u) in rows[-1][2].items()),
                  flush=True)
    print()
    print("| data | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for name, task, cells in rows:
        label = f"{name} (R²)" if task == "regression" else name
        print(f"| {label} | " + " | ".join(f"{s:.3f} ({u:.1f})" for s, u in cells.values()) + " |")


if __name__ == "__main__":
    main()
