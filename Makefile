# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install demo test chaos fuzz lint typecheck proto proto-check up bench bench-surge bench-surge-quick bench-ingest bench-billing bench-x12 clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/hcsync demo

up: install
	$(VENV)/bin/hcsync up

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

proto: install
	$(PY) -m proto.generate

proto-check: install
	$(PY) -m proto.generate --check

test: install lint typecheck proto-check
	$(VENV)/bin/pytest

# The long chaos run: 100,000 messages over MLLP while something is killed every few seconds (about an hour).
chaos: install
	HCSYNC_CHAOS_LONG=1 $(VENV)/bin/pytest tests/chaos/test_chaos_long.py -s -p no:cacheprovider

# The fuzz suite with its long profile: many more examples per property than the bounded run in `make test`.
# Hypothesis keeps what it finds in .hypothesis/ (git-ignored), so a failure found here replays first next time.
fuzz: install
	HCSYNC_FUZZ=long $(VENV)/bin/pytest tests/fuzz -p no:cacheprovider --timeout 3600

bench: install
	$(PY) -m bench.parse_throughput

# Issue 12's figures: drains with 1 and 2 workers against two do-nothing consumers, 5 minutes at 300/s, a rate search.
bench-surge: install
	$(PY) -m bench.surge

# Every column of bench-surge in under 3 minutes (1 worker; figures too short to quote).
bench-surge-quick: install
	$(PY) -m bench.surge --quick

bench-ingest: install
	$(PY) -m bench.ingest

bench-billing: install
	$(PY) -m bench.billing_bulk

# X12 parse-and-canonicalise against pyx12's claim tree: a generated 1,000-claim 837P and the corpus.
bench-x12: install
	$(PY) -m bench.x12_throughput

clean:
	rm -rf $(VENV) .hcsync .mypy_cache .ruff_cache .pytest_cache
