"""One training epoch at a time: the ``step`` of the state machine.

``Engine.step()`` runs exactly one epoch (an output epoch, or a candidate epoch, with the
install folded into the last candidate epoch of a round) and leaves the :class:`TrainState`
at an epoch boundary where it can be snapshotted. The engine itself holds only caches
derived from the state and the data (the per-pattern values rows, work buffers), rebuilt
identically on resume. No I/O, no printing.

The control flow is ``cascor1.c``'s TRAIN / TRAIN_OUTPUTS / TRAIN_INPUTS unrolled:
output epochs until win, stagnation (patience) or the epoch limit; then, unless the unit
limit is reached, one measuring candidate epoch and training epochs until stagnation or
the limit; install the best candidate; repeat.
"""

from __future__ import annotations

import hashlib
import math
import uuid

import numpy as np
import torch

from .activations import ACTIVATION_SPECS
from .candidates import candidate_rows
from .kernels import get_activation
from .errors import DataError, DivergedError
from .network import HiddenUnit, unit_column
from .quickprop import quickprop_update
from .state import TrainState
from .validation import loss_and_score

Tensor = torch.Tensor


def as_training_tensors(X, Y) -> tuple[Tensor, Tensor]:
    """Validate and convert training arrays to float32 tensors [P, I] and [P, O]."""
    X = torch.as_tensor(X, dtype=torch.float32)
    Y = torch.as_tensor(Y, dtype=torch.float32)
    if X.ndim != 2:
        raise DataError(f"inputs must be a 2-D array [patterns, features]; got shape {tuple(X.shape)}")
    if Y.ndim == 1:
        Y = Y.unsqueeze(1)
    if Y.ndim != 2:
        raise DataError(f"targets must be 1-D or 2-D [patterns, outputs]; got shape {tuple(Y.shape)}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"inputs are empty (shape {tuple(X.shape)}); need at least one pattern and one feature")
    if Y.shape[0] != X.shape[0]:
        raise DataError(f"inputs have {X.shape[0]} patterns but targets have {Y.shape[0]}")
    for name, t in (("inputs", X), ("targets", Y)):
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
            raise DataError(f"{name} contain NaN or infinite values (first at pattern {bad}); clean or impute them")
    return X.contiguous(), Y.contiguous()


def as_sample_weights(weights, n: int) -> Tensor | None:
    """Checked per-pattern weights [n] as float32, or None for no weights (all ones included:
    a run with unit weights is the unweighted run, bit for bit)."""
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
    if w.shape[0] != n:
        raise DataError(f"sample_weight has {w.shape[0]} entries for {n} patterns")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise DataError("sample_weight must be finite and >= 0")
    if not float(w.sum()) > 0:
        raise DataError("sample_weight sums to 0: no pattern would count")
    return None if bool((w == 1).all()) else w.contiguous()


def data_digest(X: Tensor, Y: Tensor, weights: Tensor | None = None) -> str:
    """SHA-256 of the training data as the engine sees it (float32, C order, with shapes; the
    sample weights too when there are any)."""
    h = hashlib.sha256()
    for t in (X, Y) + (() if weights is None else (weights,)):
        h.update(f"{tuple(t.shape)}|".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _values_cache(X: Tensor, net, max_units: int) -> Tensor:
    """[N, bias + inputs + max_units] rows of bias, inputs and the installed units' values."""
    I = net.n_inputs
    values = torch.zeros(X.shape[0], 1 + I + max_units)
    values[:, 0] = 1.0
    values[:, 1 : 1 + I] = X
    for k, unit in enumerate(net.units):
        col = 1 + I + k
        values[:, col] = unit_column(values[:, :col], unit)
    return values


class Engine:
    """Advances a :class:`TrainState` on fixed training data, one epoch per :meth:`step`."""

    def __init__(self, state: TrainState, X, Y, backend=None, validation=None, sample_weight=None):
        """``validation``: the held-out (X, Y) when the state has a validation part (the trainer
        splits it off; see :func:`cascor.trainer.start`). ``sample_weight``: a weight per
        training pattern, in the output error and the candidates' residual (an integer weight
        counts like that many copies of the row)."""
        from .parallel import LocalBackend

        X, Y = as_training_tensors(X, Y)
        w = as_sample_weights(sample_weight, X.shape[0])
        if w is not None and state.config.candidate_score != "covariance":
            raise DataError("sample_weight needs candidate_score='covariance' (Cascade 2 candidates are unweighted)")
        self.backend = backend or LocalBackend()
        self._round = None  # the backend's handle on this candidate phase's shared inputs
        net = state.network
        if tuple(X.shape) != (state.n_patterns, net.n_inputs) or Y.shape[1] != net.n_outputs:
            raise DataError(
                f"data shape {tuple(X.shape)} -> {tuple(Y.shape)} does not match the run "
                f"({state.n_patterns} patterns, {net.n_inputs} inputs, {net.n_outputs} outputs)"
            )
        digest = data_digest(X, Y, w)
        if not state.data_digest:
            state.data_digest = digest
        elif state.data_digest != digest:
            raise DataError(
                f"the data differs from the data this run was trained on (sha256 {digest[:12]}... vs "
                f"{state.data_digest[:12]}...); resume with the same dataset or file"
            )
        self.state = state
        self.X, self.Y = X, Y
        self._w = w
        self._wcol = None if w is None else w.unsqueeze(1)  # [P, 1]
        # The pattern count in every step size: the weights' sum (exact for integer weights).
        self._mass = float(state.n_patterns) if w is None else float(w.double().sum())
        cfg = state.config
        P, I, O = state.n_patterns, net.n_inputs, net.n_outputs
        # Values cache [P, bias + inputs + max_units]; its layout depends only on the config,
        # so a resumed run feeds the BLAS kernels exactly the same memory layout.
        self.values = _values_cache(X, net, cfg.max_units)
        # Names this values cache for backends that keep a copy between rounds: its first F columns
        # never change once computed, so a worker holding (key, F-1) columns needs only the new one.
        self._values_key = uuid.uuid4().hex
        self._out_act = get_activation(cfg.output_activation)
        self._net = torch.empty(P, O)
        self._out = torch.empty(P, O)
        self._prime = torch.empty(P, O)
        # ErrorIndex = RMSE / std(targets) (cascor1.c); constant targets fall back to RMSE.
        if w is None:
            std = float(Y.std(unbiased=False)) if cfg.error_measure == "index" else 1.0
        else:
            Yd, wd = Y.double(), w.double().unsqueeze(1)
            mean = float((Yd * wd).sum() / (wd.sum() * Y.shape[1]))
            std = math.sqrt(float((((Yd - mean) ** 2) * wd).sum() / (wd.sum() * Y.shape[1])))
        self._target_std = std if std > 0 else 1.0
        self._cand_inputs: tuple | None = None
        self._cand_rows = self._cand_mass = None  # rows and mass of the candidate phase (see _candidate_inputs)
        self._views: tuple | None = None  # see _output_views
        spec = ACTIVATION_SPECS[cfg.output_activation]
        self._range = (spec.low, spec.high)
        self._val_values = self._val_Y = None
        self._norm: tuple[int, float] | None = None  # (fan-in, summed squared values) for output_step
        self._cross_entropy = cfg.output_loss == "cross_entropy"
        v = state.validation
        if (v is None) != (validation is None):
            raise DataError("this run validates on held-out data: pass it" if validation is None
                            else "held-out data given to a run that has no validation part")
        self._val_w = None
        if v is not None:
            Xv, Yv = as_training_tensors(*validation[:2])
            self._val_w = as_sample_weights(validation[2], Xv.shape[0]) if len(validation) > 2 else None
            if tuple(Xv.shape) != (v.n_patterns, I) or Yv.shape[1] != O:
                raise DataError(f"validation data shape {tuple(Xv.shape)} -> {tuple(Yv.shape)} does not match the "
                                f"run ({v.n_patterns} patterns, {I} inputs, {O} outputs)")
            vdigest = data_digest(Xv, Yv, self._val_w)
            if not v.digest:
                v.digest = vdigest
            elif v.digest != vdigest:
                raise DataError(f"the validation data differs from the data this run validated on (sha256 "
                                f"{vdigest[:12]}... vs {v.digest[:12]}...)")
            # The same cache as the training rows: one new column per install, so scoring a phase
            # end costs one small product on the held-out rows only.
            self._val_values = _values_cache(Xv, net, cfg.max_units)
            self._val_Y = Yv

    MAX_CHUNK_EPOCHS = 64  # epochs one distributed step may run at most (see _chunk_length)

    # -- public -----------------------------------------------------------------------
    def step(self, limit: int | None = None) -> str:
        """Advance to the next epoch boundary; returns what happened: 'output', 'candidates',
        'installed', 'solved', 'max_units' or 'early_stopped'.

        One epoch, except in a candidate phase handed to a distributed backend, which runs up to
        ``limit`` epochs per call (its chunk size otherwise) and ends at an epoch boundary
        with the same state the one-epoch steps would have reached.
        """
        phase = self.state.phase.name
        if phase == "output":
            return self._output_epoch()
        if phase == "candidates":
            return self._candidate_epoch(limit)
        return self.state.status

    def outputs(self) -> Tensor:
        """Current network outputs on the training patterns, from the cache."""
        net = self.state.network
        y = self.values[:, : net.fan_in] @ net.output_weights.t()
        out = torch.empty_like(y)
        self._out_act.forward(y, out)
        return out

    # -- output phase -------------------------------------------------------------------
    def _output_views(self) -> tuple:
        """(values read, output weights, their transpose, quickprop slots, flat diffs, errors^T,
        diffs as NumPy) for the current fan-in. Sliced once per phase, not per epoch: on small
        data the slicing alone cost a tenth of an output epoch. Keyed on the very objects it
        views (held here, so their identity cannot be reused) and the fan-in, so a replaced
        network, slots or residual is never read through stale views."""
        st = self.state
        net = st.network
        held = (net, st.output_slots, st.errors, st.diffs)
        cached = self._views
        if cached is None or cached[1] != net.fan_in or any(a is not b for a, b in zip(held, cached[0])):
            W = net.output_weights
            d, p = st.output_slots.views()
            views = (self.values[:, : net.fan_in], W, W.t(), d, p, st.diffs.view(-1), st.errors.t(), st.diffs.numpy())
            self._views = cached = (held, net.fan_in, views)
        return cached[2]

    def _output_epoch(self) -> str:
        st, cfg = self.state, self.state.config
        net, ph, cnt = st.network, st.phase, st.counters
        Xv, W, Wt, d, p, flat, errors_t, diffs_np = self._output_views()
        torch.mm(Xv, Wt, out=self._net)
        self._out_act.forward(self._net, self._out)
        torch.sub(self._out, self.Y, out=st.diffs)
        if self._cross_entropy:
            st.errors.copy_(st.diffs)  # d(cross-entropy)/d(net) of a logistic or softmax output
        else:
            self._out_act.prime(self._out, self._net, self._prime)
            if self._out_act.sigmoid_like:
                self._prime.add_(cfg.sigmoid_prime_offset)
            torch.mul(st.diffs, self._prime, out=st.errors)
        if self._w is None:
            true_error = float(torch.dot(flat, flat))
        else:
            true_error = float(torch.dot((st.diffs * st.diffs).sum(dim=1), self._w))
        if not math.isfinite(true_error):
            raise DivergedError(
                f"training diverged at epoch {cnt.epoch} ({net.n_hidden} hidden units): the output error is "
                f"{true_error}; the output step is too large for these targets: lower output_epsilon "
                f"(now {cfg.output_epsilon}) or scale the targets")
        if self._w is None:  # (NumPy: a quarter of torch's time for these three small calls; same count)
            bits = int(np.count_nonzero(np.abs(diffs_np) > cfg.score_threshold))
        else:
            wrong = (st.diffs.abs() > cfg.score_threshold) & (self._wcol > 0)  # a pattern of weight 0 does not count
            bits = int(torch.count_nonzero(wrong))
        cnt.true_error, cnt.error_bits = true_error, bits
        ph.passes += 1
        if cfg.error_measure == "bits":
            # Weighted: the wrong bits must weigh less than half a row of weight 1. Weights count as
            # repeated rows elsewhere (the step sizes use their sum), so integer weights decide as
            # the repeated rows would, all-ones weights as no weights; but rows weighted near zero
            # (class_weight 1e-4) no longer keep a run growing to its unit limit to fit nothing.
            won = bits == 0 if self._w is None else float((wrong * self._wcol).sum()) < 0.5
        else:
            cnt.error_index = math.sqrt(true_error / (self._mass * st.diffs.shape[1])) / self._target_std
            won = cnt.error_index <= cfg.error_index_threshold
        if won:
            st.history.add_output_epoch(cnt.epoch, net.n_hidden, true_error, bits)
            self._phase_end(true_error)
            return self._finish("solved")

        slope = torch.mm(errors_t if self._w is None else (st.errors * self._wcol).t(), Xv)
        if cfg.output_l2:
            slope.add_(W, alpha=cfg.output_l2 * self._mass)  # the penalty's gradient on the summed-error scale
        quickprop_update(W, d, p, slope, epsilon=cfg.output_epsilon / self._step_scale(Xv), mu=cfg.output_mu,
                         decay=cfg.output_decay)
        cnt.epoch += 1
        cnt.output_epochs += 1
        ph.updates += 1
        st.history.add_output_epoch(cnt.epoch, net.n_hidden, true_error, bits)

        stagnant = False
        if cfg.output_patience == 0:
            pass
        elif ph.first:
            ph.first, ph.last = False, true_error
        elif abs(true_error - ph.last) > ph.last * cfg.output_change_threshold:
            ph.last, ph.quit = true_error, ph.updates + cfg.output_patience
        elif ph.updates >= ph.quit:
            stagnant = True
        if stagnant or ph.passes >= cfg.output_epochs:
            if self._phase_end(true_error):
                return self._finish("early_stopped")
            if net.n_hidden >= cfg.max_units:
                return self._finish("max_units")
            self._enter(self.state, "candidates", quit=cfg.input_epochs)
        return "output"

    def _step_scale(self, Xv: Tensor) -> float:
        """What output_epsilon is divided by: the pattern count (cascor1.c), or for the normalised
        step the summed squared values the outputs read (normalised LMS: a linear step below 2 of
        it cannot overshoot, whatever the inputs' scale). Fixed within a phase (the values are)."""
        if self.state.config.output_step == "patterns":
            return self._mass
        F = Xv.shape[1]
        if self._norm is None or self._norm[0] != F:
            if self._w is None:
                flat = Xv.contiguous().view(-1)
                total = float(torch.dot(flat, flat))
            else:
                total = float(torch.dot((Xv * Xv).sum(dim=1), self._w))
            self._norm = (F, max(total, 1e-12))
        return self._norm[1]

    def _phase_end(self, true_error: float) -> bool:
        """Score the network as the output phase leaves it; True when validation says stop.

        The training figures are those of the phase's last measured epoch (no extra pass over
        the training data); the held-out rows are scored with the weights as they are now."""
        st, cfg = self.state, self.state.config
        net, task = st.network, st.targets.get("task", "regression")
        train_loss = true_error / (self._mass * self._out.shape[1])
        _, train_score = loss_and_score(self._out, self.Y, task, *self._range, weights=self._w)
        val_loss = val_score = math.nan
        stop = False
        v = st.validation
        if v is not None:
            W = net.output_weights
            y = self._val_values[:, : net.fan_in] @ W.t()
            out = torch.empty_like(y)
            self._out_act.forward(y, out)
            val_loss, val_score = loss_and_score(out, self._val_Y, task, *self._range, weights=self._val_w)
            if not math.isfinite(val_loss):
                raise DivergedError(f"the held-out error is {val_loss} at epoch {st.counters.epoch} "
                                    f"({net.n_hidden} hidden units): lower output_epsilon (now {cfg.output_epsilon})")
            v.observe(net.n_hidden, val_loss, val_score, W, cfg.tol)
            stop = cfg.n_iter_no_change > 0 and v.since_best >= cfg.n_iter_no_change
        st.history.add_scores(st.counters.epoch, net.n_hidden, train_loss, train_score, val_loss, val_score)
        return stop

    def _finish(self, status: str) -> str:
        self.state.status = status
        self.state.roll_back()  # always end on the best network seen (a no-op without validation)
        self._enter(self.state, "done", quit=0)
        return status

    @staticmethod
    def _enter(st: TrainState, name: str, quit: int) -> None:
        st.phase.name, st.phase.passes, st.phase.updates = name, 0, 0
        st.phase.first, st.phase.last, st.phase.quit = True, 0.0, quit

    # -- candidate phase ------------------------------------------------------------------
    def _candidate_inputs(self) -> tuple:
        """Per-phase constants derived from the stored residual (recomputed identically on resume):
        (values rows the candidates read, centred residual, its transpose) for covariance
        candidates, (values rows, residual, its transpose, its summed squares) for Cascade 2.

        With ``candidate_rows`` the phase reads a random subset of the rows (see
        :func:`cascor.candidates.candidate_rows`): the residual is centred and normalised on those
        rows, and the step size counts them, so the phase is the one the subset alone would run."""
        if self._cand_inputs is None:
            st, cfg = self.state, self.state.config
            F = st.network.fan_in
            rows = candidate_rows(cfg.seed, st.network.n_hidden, st.n_patterns, cfg.candidate_rows)
            if rows is None:
                X, E, D, w, wcol, mass = self._output_views()[0], st.errors, st.diffs, self._w, self._wcol, self._mass
            else:
                idx = torch.from_numpy(rows)
                # The rows' values in a buffer as wide as the cache: the kernels see the layout a
                # run holding only these rows would give them.
                X = torch.empty(len(rows), self.values.shape[1])[:, :F]
                X.copy_(self.values[idx, :F])
                E, D = st.errors[idx], st.diffs[idx]
                w = None if self._w is None else self._w[idx]
                wcol = None if w is None else w.unsqueeze(1)
                mass = float(len(rows)) if w is None else float(w.double().sum())
            self._cand_rows = X.shape[0]
            self._cand_mass = mass if mass > 0 else 1.0  # (a subset whose weights are all 0 learns nothing)
            if cfg.candidate_score == "covariance" and w is None:
                sse = float(torch.dot(E.reshape(-1), E.reshape(-1)))
                Ec = (E - E.mean(dim=0)) / (sse if sse > 0 else 1.0)
                self._cand_inputs = (X, Ec, Ec.t().contiguous())
                self._cand_decay = self._scaled_decay(sse, mass, E.shape[1])
            elif cfg.candidate_score == "covariance":
                # Weighted: sum_p V_p Ec_p is then the weighted covariance of V with the residual.
                sse = float(torch.dot((E * E).sum(dim=1), w))
                mean = (E * wcol).sum(dim=0) / self._cand_mass
                Ec = wcol * (E - mean) / (sse if sse > 0 else 1.0)
                self._cand_inputs = (X, Ec, Ec.t().contiguous())
                self._cand_decay = self._scaled_decay(sse, mass, E.shape[1])
            else:
                R = -D
                rr = float(torch.dot(R.reshape(-1), R.reshape(-1)))
                self._cand_inputs = (X, R, R.t().contiguous(), rr if rr > 0 else 1.0)
                self._cand_decay = cfg.input_decay
        return self._cand_inputs

    def _scaled_decay(self, sse: float, mass: float, n_outputs: int) -> float:
        """The candidates' weight decay: input_decay, plus input_l2 over the residual's RMS (the
        covariance slope scales as 1 / RMS, so the penalty keeps its weight against it)."""
        cfg = self.state.config
        if not cfg.input_l2:
            return cfg.input_decay
        rms = math.sqrt(sse / (mass * n_outputs)) if mass > 0 else 0.0
        return cfg.input_decay + (cfg.input_l2 / rms if rms > 0 else 0.0)

    def _candidate_epoch(self, limit: int | None) -> str:
        st, cfg = self.state, self.state.config
        ph, net = st.phase, st.network
        F = net.fan_in
        X, *inputs = self._candidate_inputs()
        covariance = cfg.candidate_score == "covariance"
        if st.pool is None:
            st.pool = st.new_pool()
            st.pool.initialize(cfg.seed, net.n_hidden, cfg.weight_range)
        pool = st.pool
        measuring = covariance and ph.passes == 0
        eps = cfg.input_epsilon / (self._cand_mass * F)  # the pattern count, or the weights' sum
        left = self._epochs_left(measuring)
        chunk = min(left, self._chunk_length(measuring), limit if limit is not None else left)
        if chunk > 1 and self.backend.distributes(self._cand_rows, pool.size, F, len(pool.blocks)):
            return self._candidate_chunk(chunk, measuring, eps)
        if measuring:
            pool.measure(X, inputs[0])
        elif covariance:
            pool.train_covariance(X, inputs[0], inputs[1], eps, cfg.input_mu, self._cand_decay)
        else:
            pool.train_cascade2(X, inputs[0], inputs[1], inputs[2], eps, cfg.input_epsilon / self._cand_rows,
                                cfg.input_mu, cfg.input_decay)
        if self._after_candidate_epoch(measuring):
            self._install(*pool.winner())
            return "installed"
        return "candidates"

    def _epochs_left(self, measuring: bool) -> int:
        """Candidate epochs the phase may still run (its cap), the measuring pass included."""
        return self.state.config.input_epochs - self.state.phase.updates + (1 if measuring else 0)

    def _chunk_length(self, measuring: bool) -> int:
        """Epochs one distributed step may run: the backend's chunk, or longer when the patience
        rule cannot stop the phase before then (nothing computed past a stop is wasted)."""
        cfg, ph = self.state.config, self.state.phase
        size = getattr(self.backend, "chunk_epochs", 1)
        if cfg.input_patience == 0:
            free = self._epochs_left(measuring)
        else:
            # A stop at training epoch j needs j >= quit, and quit only moves to (i + patience) for
            # some future i >= updates: so no epoch before min(quit, updates + patience) can stop.
            free = min(ph.quit, ph.updates + cfg.input_patience) - ph.updates + 1 + (1 if measuring else 0)
        # A step is where Ctrl-C, a callback or a checkpoint can act: never hold them for a whole
        # long round (runners compute ahead regardless, so short chunks cost ~1 ms each).
        return min(max(size, free), self.MAX_CHUNK_EPOCHS)

    def _after_candidate_epoch(self, measuring: bool) -> bool:
        """Count the epoch and apply TRAIN_INPUTS' patience rule; True when the round is over."""
        st, cfg = self.state, self.state.config
        ph, pool = st.phase, st.pool
        ph.passes += 1
        st.counters.epoch += 1
        st.counters.candidate_epochs += 1
        st.history.add_candidate_epoch(st.counters.epoch, st.network.n_hidden, pool.best_score)
        if math.isnan(pool.best_score):
            raise DivergedError(f"the candidates' scores are not numbers at epoch {st.counters.epoch} "
                                f"({st.network.n_hidden} hidden units): lower input_epsilon (now {cfg.input_epsilon})")
        if measuring:
            return False
        i = ph.updates
        ph.updates += 1
        score = pool.best_score
        stagnant = False
        if cfg.input_patience == 0:
            pass
        elif ph.first:
            ph.first, ph.last = False, score
        elif abs(score - ph.last) > ph.last * cfg.input_change_threshold:
            ph.last, ph.quit = score, i + cfg.input_patience
        elif i >= ph.quit:
            stagnant = True
        return stagnant or ph.updates >= cfg.input_epochs

    def _candidate_chunk(self, epochs: int, measuring: bool, eps: float) -> str:
        """Several epochs of every block on the backend, then the phase replayed epoch by epoch."""
        st, cfg = self.state, self.state.config
        pool = st.pool
        F = st.network.fan_in
        if self._round is None:
            X, *inputs = self._candidate_inputs()
            # A worker keeps the values columns between rounds and is sent only the new one; a
            # subset of rows is new every phase, so its key names the phase and it travels whole.
            key = self._values_key if self._cand_rows == st.n_patterns else f"{self._values_key}/{st.network.n_hidden}"
            shared = {"X": X.contiguous().numpy(), "X_key": [key, F]}
            if cfg.candidate_score == "covariance":
                shared.update(kind="covariance", Ec=inputs[0].numpy(), EcT=inputs[1].numpy())
            else:
                shared.update(kind="cascade2", R=inputs[0].contiguous().numpy(), RT=inputs[1].numpy(), rr=inputs[2])
            self._round = self.backend.begin_round(shared)
        # start/max_epochs let a backend compute ahead: the phase's epochs from pass `start` on
        # are the same whatever the replay decides, up to the phase's epoch cap.
        params = {"epochs": epochs, "measure_first": measuring, "eps": eps, "eps_out": cfg.input_epsilon / self._cand_rows,
                  "mu": cfg.input_mu, "decay": self._cand_decay, "start": st.phase.passes,
                  "max_epochs": self._epochs_left(measuring)}
        keys = ("weights", "delta", "prev_slope", "prev_cor") + (
            ("out_weights", "out_delta", "out_prev_slope") if pool.cascade2 else ())
        blocks = [{"plan": [list(p) for p in blk.plan],
                   **{k: getattr(blk, k).numpy() for k in keys}} for blk in pool.blocks]
        results = self.backend.run_blocks(self._round, blocks, params)
        starts = [a for a, _ in pool.ranges]
        for t in range(epochs):
            for (a, b), res in zip(pool.ranges, results):
                pool.scores[a:b] = torch.from_numpy(res["scores"][t])
            pool.select()
            if self._after_candidate_epoch(measuring and t == 0):
                j = max(i for i, a in enumerate(starts) if a <= pool.best)
                res = results[j]
                extra = torch.from_numpy(res["best_extra"][t].copy())
                weights = torch.from_numpy(res["best_weights"][t].copy())
                act, steep = pool.plan[pool.best]
                self._install(pool.best, weights, act, steep, extra)
                return "installed"
        for blk, res in zip(pool.blocks, results):
            for k in keys:
                getattr(blk, k).copy_(torch.from_numpy(res[k]))
        return "candidates"

    def _install(self, c: int, weights: Tensor, act: str, steep: float, extra: Tensor) -> None:
        """Freeze candidate ``c`` into the cascade (cascor1.c INSTALL_NEW_UNIT).

        ``extra`` is the winner's correlations (covariance) or its own output weights (Cascade 2).
        """
        st, cfg = self.state, self.state.config
        net, pool = st.network, st.pool
        F = net.fan_in
        unit = HiddenUnit(weights, act, steep)
        self.values[:, F] = unit_column(self.values[:, :F], unit)
        if self._val_values is not None:
            self._val_values[:, F] = unit_column(self._val_values[:, :F], unit)
        if pool.cascade2:
            out_w = extra * cfg.weight_multiplier
        else:
            wm = cfg.weight_multiplier if cfg.error_measure == "bits" else cfg.weight_multiplier / F
            out_w = -extra * wm
        net.add_unit(unit, out_w)
        st.output_slots.grow()
        st.history.add_unit(st.counters.epoch, c, pool.best_score, act, steep)
        st.pool = None
        self._cand_inputs = None
        if self._round is not None:
            self.backend.end_round(self._round)
            self._round = None
        self._enter(st, "output", quit=cfg.output_patience)
