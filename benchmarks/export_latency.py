"""Predict latency of a trained cascade through every way to run it, side by side, in one process:
cascor itself (the estimator's predict_proba, torch), ONNX Runtime (the float64 and float32
graphs), the NumPy-only cascor.inference, and the compiled C export (a C driver timing its own
loop, so no Python call sits in the C figure). Batches of 1, 1,000 and 100,000 rows; one thread
everywhere. Then cold start: a fresh process that loads the model and predicts one row, for the
snapshot (cascor + torch + h5py) and each export.

    python benchmarks/export_latency.py [--dataset classification|spirals] [--reps N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import cascor  # noqa: E402
from cascor.exporters import export, model_from  # noqa: E402
from cascor.exporters.check import compiler  # noqa: E402
from cascor.inference import load as load_npz  # noqa: E402

BATCHES = (1, 1_000, 100_000)

DRIVER = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model.h"

/* model-driver ROWS_FILE N REPS: predict N rows REPS times; print the median seconds per pass */
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv)
{
    long n = atol(argv[2]), reps = atol(argv[3]), i, r;
    float *in = malloc(sizeof(float) * n * CASCOR_N_INPUTS), out[CASCOR_N_OUTPUTS];
    double *t = malloc(sizeof(double) * reps), sink = 0;
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(in, sizeof(float), n * CASCOR_N_INPUTS, f) != (size_t)(n * CASCOR_N_INPUTS)) return 2;
    fclose(f);
    for (r = 0; r < reps; ++r) {
        double t0 = now();
        for (i = 0; i < n; ++i) { sink += predict(in + i * CASCOR_N_INPUTS, out); sink += out[0]; }
        t[r] = now() - t0;
    }
    qsort(t, reps, sizeof(double), cmp);
    printf("%.9f %g\n", t[reps / 2], sink);
    return 0;
}
"""


def fitted(name):
    from sklearn.datasets import make_classification
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "spirals":
        from cascor.datasets import two_spirals

        ds = two_spirals()
        est = cascor.CascorClassifier(preset="fahlman-spirals", random_state=1, early_stopping=False)
        return est.fit(ds.X, ds.y), ds.X
    X, y = make_classification(5000, 20, n_informative=5, n_classes=3, random_state=0)
    # one cascade, so that the snapshot row loads the same model the exports run (a snapshot holds
    # one run); the default averages 5 cascades on this data (~36 units: latency grows with units)
    return make_pipeline(StandardScaler(), cascor.CascorClassifier(random_state=0, n_estimators=1)).fit(X, y), X


def median_time(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cold(code, reps):
    """Median wall seconds of a fresh interpreter (or binary) running ``code`` to the end."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(code, check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["classification", "spirals"], default="classification")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per figure (median)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    est, X_train = fitted(args.dataset)
    model = model_from(est)
    rng = np.random.default_rng(0)
    rows = {n: X_train[rng.integers(0, len(X_train), n)] for n in BATCHES}
    print(f"model: {args.dataset}, {model.n_inputs} inputs, {model.n_hidden} hidden units, "
          f"{len(model.classes)} classes; one thread; median of {args.reps}")

    with tempfile.TemporaryDirectory(prefix="cascor-bench-") as d:
        paths = {"onnx64": os.path.join(d, "m64.onnx"), "onnx32": os.path.join(d, "m32.onnx"),
                 "npz": os.path.join(d, "m.npz"), "c": os.path.join(d, "model.c"), "h5": os.path.join(d, "m.h5")}
        export(est, paths["onnx64"], format="onnx", dtype="float64")
        export(est, paths["onnx32"], format="onnx", dtype="float32")
        export(est, paths["npz"], format="numpy")
        export(est, paths["c"], format="c")
        clf = est[-1] if hasattr(est, "steps") else est
        cascor.save(clf.state_, paths["h5"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sessions = {k: ort.InferenceSession(paths[k], opts, providers=["CPUExecutionProvider"])
                    for k in ("onnx64", "onnx32")}
        npm = load_npz(paths["npz"])

        cc = compiler()
        driver = None
        if cc:
            with open(os.path.join(d, "driver.c"), "w") as f:
                f.write(DRIVER)
            driver = os.path.join(d, "driver")
            subprocess.run([cc, "-std=c99", "-O2", "-o", driver, os.path.join(d, "driver.c"), paths["c"], "-lm"],
                           check=True, capture_output=True)

        def c_time(n):
            if driver is None:
                return float("nan")
            binf = os.path.join(d, f"rows{n}.bin")
            rows[n].astype(np.float32).tofile(binf)
            reps = max(args.reps, 1000 if n == 1 else args.reps)
            out = subprocess.run([driver, binf, str(n), str(reps)], check=True, capture_output=True, text=True)
            return float(out.stdout.split()[0])

        ways = {
            "cascor predict_proba (torch, float64)": lambda X: est.predict_proba(X),
            "ONNX Runtime, float64 graph": lambda X: sessions["onnx64"].run(["probabilities"], {"input": X}),
            "ONNX Runtime, float32 graph": lambda X: sessions["onnx32"].run(["probabilities"],
                                                                            {"input": X.astype(np.float32)}),
            "NumPy cascor.inference (float64)": lambda X: npm.predict_proba(X),
        }
        header = f"{'predict latency':40s}" + "".join(f"{f'{n:,} rows':>16s}" for n in BATCHES)
        print("\n" + header)
        print("-" * len(header))
        for name, fn in ways.items():
            cells = []
            for n in BATCHES:
                t = median_time(lambda: fn(rows[n]), args.reps if n < 100_000 else max(3, args.reps // 2))
                cells.append(_fmt(t, n))
            print(f"{name:40s}" + "".join(f"{c:>16s}" for c in cells))
        print(f"{'C export, float (-O2, its own loop)':40s}" + "".join(f"{_fmt(c_time(n), n):>16s}" for n in BATCHES))

        # cold start: a fresh process loads the model and predicts one row
        row = repr(rows[1][0].tolist())
        py = sys.executable
        snippets = {
            "snapshot (cascor.snapshot.load + forward)": f"""
                import torch; torch.set_num_threads(1)
                from cascor.snapshot import load
                st = load({paths['h5']!r}).state
                x = torch.tensor([{row}], dtype=torch.float64)
                print(st.best_network().forward(x, dtype=torch.float64))""",
            "estimator pickle (joblib) + predict_proba": None,
            "ONNX Runtime (float64 graph)": f"""
                import numpy as np, onnxruntime as ort
                s = ort.InferenceSession({paths['onnx64']!r}, providers=['CPUExecutionProvider'])
                print(s.run(['probabilities'], {{'input': np.array([{row}])}}))""",
            "NumPy cascor.inference": f"""
                import numpy as np
                from cascor.inference import load
                print(load({paths['npz']!r}).predict_proba(np.array([{row}])))""",
        }
        import joblib

        joblib.dump(est, os.path.join(d, "est.joblib"))
        snippets["estimator pickle (joblib) + predict_proba"] = f"""
                import joblib, numpy as np
                print(joblib.load({os.path.join(d, 'est.joblib')!r}).predict_proba(np.array([{row}])))"""
        print(f"\n{'cold start: fresh process, load, predict one row':52s}{'wall':>10s}")
        print("-" * 62)
        base = cold([py, "-c", "pass"], args.reps)
        print(f"{'(python -c pass: the interpreter alone)':52s}{base * 1e3:8.0f} ms")
        for name, code in snippets.items():
            print(f"{name:52s}{cold([py, '-c', textwrap.dedent(code)], args.reps) * 1e3:8.0f} ms")
        if driver is not None:
            binf = os.path.join(d, "rows1.bin")
            print(f"{'C export (a compiled program, one row)':52s}{cold([driver, binf, '1', '1'], args.reps) * 1e3:8.1f} ms")
        sizes = {k: os.path.getsize(p) for k, p in paths.items()}
        print("\nfile sizes: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items()))


def _fmt(seconds, n):
    """Per call for one row, per row for a batch."""
    if seconds != seconds:
        return "n/a"
    if n == 1:
        return f"{seconds * 1e6:.1f} us/call"
    return f"{seconds / n * 1e9:.0f} ns/row"


if __name__ == "__main__":
    main()
