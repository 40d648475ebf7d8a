# The two commands: `make demo` runs the showcase pipeline, `make test` runs the test suite (`make test-long` the rest).
PY := .venv/bin/python

.PHONY: setup demo test test-long lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	bash examples/showcase/demo.sh

test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest -n 3 -q -rs --durations=20 -m "not long"  # 3 workers on 2 cores: most tests wait on real tools

# The long integration tests (marked `long`: long Snakemake and Slurm runs) that `make test` leaves out to stay under
# ~20 minutes on 2 cores; `make test test-long` runs every test.
test-long: setup
	.venv/bin/pytest -n 3 -q -rs --durations=20 -m long

lint: setup
	.venv/bin/ruff check .

bench: setup
	bash bench/run-all.sh

# Every runnable workflow of Snakemake's own test suite, local vs --executor nixworkflow vs re-run from the
# store; writes docs/snakemake-compat.md and fails on a regression (a sample runs in `make test`).
.PHONY: compat
compat: setup
	$(PY) -m tests.snakemake_compat $(ARGS)  # ARGS="--only NAME,NAME": just those cases
luigi-compat: setup ; $(PY) -m tests.luigi_compat $(ARGS)  # ARGS="--only MODULE,MODULE"

# The test functions of Snakemake's own tests/tests.py that `make compat` does not run (several runs, edits between
# them, the API, state checked afterwards), by Snakemake's own pytest: as is, then with run()'s default executor
# switched to nixworkflow; writes docs/snakemake-pytest-compat.md and fails on a regression (a sample in `make test`).
.PHONY: compat-pytest
compat-pytest: setup
	$(PY) -m tests.snakemake_pytest_compat $(ARGS)  # ARGS="--only NAME,NAME", "--chunk I/N" or "-j N"
