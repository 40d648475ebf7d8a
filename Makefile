# The two commands: `make demo` runs the showcase pipeline, `make test` runs every test.
PY := .venv/bin/python

.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	bash examples/showcase/demo.sh

test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest -n 2 -q

lint: setup
	.venv/bin/ruff check .

bench: setup
	bash bench/run-all.sh
