"""Figures: decision boundary, learning curve, and a drawing of the cascade (matplotlib, Agg)."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_boundary(network, X, y, path: str, title: str = "", inputs=None) -> None:
    """Shade the network's output over the input plane (2-D problems only) and overlay the data.
    ``inputs``: the run's :class:`~cascor.inputs.InputScaling`; the plane is drawn in the data's
    own coordinates and mapped through it for the network."""
    import torch

    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] != 2:
        raise ValueError(f"a decision boundary needs 2 input features; this data has {X.shape[1]}")
    plt = _plt()
    pad = 0.1 * (X.max(axis=0) - X.min(axis=0))
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    with torch.no_grad():
        seen = grid if inputs is None else inputs.apply(grid)
        out = network(torch.as_tensor(seen, dtype=torch.float32)).numpy()
    y = np.asarray(y)
    classes = np.unique(y)
    fig, ax = plt.subplots(figsize=(6, 6))
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    if out.shape[1] == 1:
        # Two classes: the output itself, shaded; markers black / white.
        ax.contourf(gx, gy, out[:, 0].reshape(gx.shape), levels=30, cmap="RdBu_r", alpha=0.8)
        for i, cls in enumerate(classes):
            sel = y == cls
            ax.scatter(X[sel, 0], X[sel, 1], marker=markers[i % len(markers)], facecolors="white" if i % 2 else "black",
                       edgecolors="black", s=22, label=f"class {cls}")
    else:
        # More classes: each region in its class's colour, and each class's markers in the same one
        # (as scikit-learn's DecisionBoundaryDisplay draws it; its constructor changed between the
        # versions cascor supports, so the regions are drawn here).
        from matplotlib.colors import BoundaryNorm, ListedColormap

        colours = plt.get_cmap("tab10").colors[: len(classes)]
        cmap, norm = ListedColormap(colours), BoundaryNorm(np.arange(len(classes) + 1) - 0.5, len(classes))
        ax.contourf(gx, gy, out.argmax(axis=1).reshape(gx.shape), levels=np.arange(len(classes) + 1) - 0.5,
                    cmap=cmap, norm=norm, alpha=0.35)
        for i, cls in enumerate(classes):
            sel = y == cls
            ax.scatter(X[sel, 0], X[sel, 1], marker=markers[i % len(markers)], color=colours[i], edgecolors="black",
                       s=22, label=f"class {cls}")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"decision boundary ({network.n_hidden} hidden units)")
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_history(history: dict, path: str, title: str = "", chosen_units: int | None = None) -> None:
    """Output-phase error per epoch with each unit install marked; below it, when the run has
    scores per unit (format 1.2), the training and held-out scores by network size with the
    chosen size (the network the run ended on) marked."""
    plt = _plt()
    ep = history["epochs"]
    epoch = np.asarray(ep["epoch"])
    phase = np.asarray(ep["phase"])
    err = np.asarray(ep["true_error"], dtype=float)
    scores = history.get("scores") or {}
    panels = 2 if scores.get("hidden_units") else 1
    fig, axes = plt.subplots(panels, 1, figsize=(8, 4 * panels), squeeze=False)
    ax = axes[0, 0]
    mask = phase == 0
    ax.plot(epoch[mask], err[mask], ".", ms=2, label="sum of squared errors (output epochs)")
    for i, e in enumerate(history["units"]["epoch"]):
        ax.axvline(e, color="grey", lw=0.5, alpha=0.6, label="unit installed" if i == 0 else None)
    ax.set_xlabel("epoch (output + candidate)")
    ax.set_ylabel("error")
    ax.set_yscale("log")
    ax.legend(loc="upper right")
    ax.set_title(title or "learning curve")
    if panels == 2:
        ax = axes[1, 0]
        units = np.asarray(scores["hidden_units"])
        ax.plot(units, scores["train_score"], "o-", ms=3, label="training")
        val = np.asarray(scores["val_score"], dtype=float)
        if np.isfinite(val).any():
            ax.plot(units, val, "s-", ms=3, label="held-out")
        if chosen_units is not None:
            ax.axvline(chosen_units, color="black", ls="--", lw=1, label=f"chosen: {chosen_units} units")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("hidden units")
        ax.set_ylabel("score (accuracy or R²)")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_network(network, path: str, title: str = "") -> None:
    """The cascade as a connection matrix: rows are units/outputs, columns the values they read."""
    plt = _plt()
    I, H, O = network.n_inputs, network.n_hidden, network.n_outputs
    F = 1 + I + H
    M = np.full((H + O, F), np.nan)
    for k, u in enumerate(network.units):
        M[k, : 1 + I + k] = u.weights.numpy()
    M[H:, :] = network.output_weights.numpy()
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * F + 2), max(3, 0.4 * (H + O) + 1.5)))
    # The colour scale covers the bulk of the weights (95th percentile of |w|); larger ones are
    # drawn at full colour instead of washing every other weight out to white.
    finite = np.abs(M[np.isfinite(M)])
    lim = float(np.percentile(finite, 95)) if finite.size else 1.0
    lim = lim if lim > 0 else 1.0
    im = ax.imshow(np.clip(M, -lim, lim), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(F), ["bias"] + [f"in{i}" for i in range(I)] + [f"h{k}" for k in range(H)], rotation=90)
    short = lambda name: "-".join(part[:3] for part in name.split("_"))  # noqa: E731
    ax.set_yticks(range(H + O), [f"h{k} ({short(u.activation)})" for k, u in enumerate(network.units)]
                  + [f"out{o}" for o in range(O)])
    fig.colorbar(im, ax=ax, label="weight" + (" (clipped)" if finite.size and finite.max() > lim else ""),
                 extend="both" if finite.size and finite.max() > lim else "neither")
    ax.set_title(title or f"cascade: {I} inputs, {H} hidden units, {O} outputs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
