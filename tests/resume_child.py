"""Run in a fresh process by test_resume: resume each given snapshot and finish the run."""

import os
import sys

import torch

from cascor import snapshot, trainer
from cascor.workflow import load_source, targets_for

torch.set_num_threads(1)
out_dir, paths = sys.argv[1], sys.argv[2:]
for path in paths:
    snap = snapshot.load(path)
    X, Y, _ = targets_for(load_source(snap.data_source), snap.state.config)
    engine = trainer.resume(snap.state, X, Y)
    trainer.run(engine)
    snapshot.save(engine.state, os.path.join(out_dir, "resumed-" + os.path.basename(path)))
