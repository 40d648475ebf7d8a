#!/usr/bin/env bash
# Luigi adapter vs plain Luigi (all-cached graph, cold per-task overhead); see bench/README-luigi.md.
#   bash bench/bench_luigi.sh [--tasks 1000] [--cold-tasks 300] [--runs 7]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/bench_luigi.py "$@"
