#!/usr/bin/env bash
# Runs every benchmark in bench/ in turn; each prints a Markdown table with medians and ratios.
set -euo pipefail
cd "$(dirname "$0")"
for script in bench_*.sh; do
  echo "## $script"
  bash "$script"
  echo
done
