# Two commands on a fresh machine (Python 3.11+ and pip only):
#   make demo   set up .venv and run the baseline flow (AutoML) on the bundled diabetes sample, on localml
#   make test   set up .venv (and Chromium, which checks the RAI dashboard renders) and run the test suite
#   make test-slow  the slow tests: AutoML searches, whole RAI reviews, long sweeps, a killed flow re-run (CI runs them)
#   make e2e    the end-to-end tests: the local stack through the Prefect UI in Chromium, schedules, events,
#               20 runs at once on SQLite and on PostgreSQL (CI runs them)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-faults e2e bench clean chromium postgresql

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/amlflows run baseline

# the tests open the Responsible AI dashboard and the Prefect UI in a headless Chromium: Debian's package, installed if missing
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
		command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || { \
		echo "The tests need Chromium: install it (apt-get install chromium) and run make test again." >&2; exit 1; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest

test-slow: $(STAMP) chromium
	$(BIN)/python -m pytest -m slow

e2e: $(STAMP) chromium postgresql
	$(BIN)/python -m pytest -m e2e

# the load test runs the stack on PostgreSQL: Debian's server programs, installed if missing
postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || { \
		echo "The load test needs PostgreSQL's server programs: install them (apt-get install postgresql) and run make e2e again." >&2; exit 1; }

# the fault campaign: every quick flow with a transient fault at each operation it uses (about an hour; not in CI)
test-faults: $(STAMP)
	$(BIN)/python -m pytest -m campaign -s tests/flows/test_faults.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_jobs.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_baseline.py
	$(BIN)/python benchmarks/bench_environments.py
	$(BIN)/python benchmarks/bench_rai.py

clean:
	rm -rf .localml
