"""What the estimators' modules share: progress lines and the 'auto' test."""

from __future__ import annotations

import sys


class Progress:
    """verbose=1: one line per installed unit on stderr (as scikit-learn's estimators print);
    an averaged fit names the member cascade each line is about (``member``: "2/5")."""

    def __init__(self, name: str):
        self.name = name
        self.member = None

    def __call__(self, engine, event):
        st = engine.state
        if event == "installed" or st.done:
            s = st.history.scores
            val = f", validation score {s['val_score'][-1]:.4f}" if st.validation is not None and s["val_score"] else ""
            what = f"unit {st.network.n_hidden} installed" if event == "installed" else f"done ({st.status})"
            who = self.name if self.member is None else f"{self.name} [cascade {self.member}]"
            print(f"{who}: epoch {st.counters.epoch}: {what}{val}", file=sys.stderr, flush=True)
        return None


def is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"
