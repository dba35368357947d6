# Two entry points for a new user: `make demo` and `make test`. Both (re)create .venv idempotently.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-service browser venv bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,dask,export,track,serve]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cascor demo --out demo-output

# Two pytest workers: most tests wait on subprocesses (Python + torch start-up), so the default run
# takes ~7 minutes on 2 cores instead of ~10 serially (measured with `--durations`).
test: $(STAMP)
	$(PY) -m pytest -q -n 2

# `cascor serve` end to end, under load and in a real browser (~6 minutes; .ci/run runs it).
# The browser is Debian's Chromium and its driver: `make browser` installs them (root).
test-service: $(STAMP)
	$(PY) -m pytest -q -m service

browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

bench: $(STAMP)
	$(PY) benchmarks/two_spirals.py

clean:
	rm -rf $(VENV) demo-output
