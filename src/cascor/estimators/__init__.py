"""The estimators' parts: choices made on held-out rows (``choice``), averaged fits
(``ensemble``) and what they share (``common``). The estimators themselves are in
:mod:`cascor.sklearn`."""
