#!/usr/bin/env bash
# Engine overhead on a 1,000-step pipeline of trivial steps, against running the same
# commands with plain /bin/sh (the work itself), and `nw --help` start-up.
#   bash bench/bench_engine.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
NW="$PWD/.venv/bin/nw"
work=$(mktemp -d /tmp/nw-bench-engine.XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export NIX_WORKFLOW_STORE="$work/store"

python3 - "$N" "$work" <<'PY'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/pipeline.py", "w") as f:
    f.write("from nixlib import output\n")
    f.write(f"steps = [output(f'echo {{i}} > $out/v') for i in range({n})]\n")
with open(f"{work}/plain.sh", "w") as f:
    for i in range(n):
        f.write(f"mkdir -p {work}/plain/{i} && sh -c 'echo {i} > {work}/plain/{i}/v'\n")
PY

cd "$work"
hyperfine --style basic --warmup 1 --runs 5 --export-json "$work/cold.json" \
  --prepare "rm -rf '$work/store' '$work/plain' '$work/nix-workflow-output'; sync" \
  -n "plain sh, $N commands" "sh $work/plain.sh" \
  -n "nw run, $N steps cold (-j 1)" "$NW run pipeline.py -q -j 1" >/dev/null
"$NW" run pipeline.py -q -j 2 2>/dev/null
hyperfine --style basic --warmup 1 --runs 5 --export-json "$work/cached.json" \
  -n "nw run, $N steps all cached" "$NW run pipeline.py -q" \
  -n "nw --help" "$NW --help" >/dev/null

python3 - "$N" "$work" <<'PY'
import json, statistics, sys
n, work = int(sys.argv[1]), sys.argv[2]
rows = json.load(open(f"{work}/cold.json"))["results"] + json.load(open(f"{work}/cached.json"))["results"]
med = {r["command"]: statistics.median(r["times"]) for r in rows}
print("| command | median (s) |\n|---|---|")
for name, t in med.items():
    print(f"| {name} | {t:.3f} |")
plain, cold = med[f"plain sh, {n} commands"], med[f"nw run, {n} steps cold (-j 1)"]
cached = med[f"nw run, {n} steps all cached"]
print(f"\nengine overhead per cache-miss step: {(cold - plain) / n * 1000:.2f} ms "
      f"(nw {cold / n * 1000:.2f} ms/step vs plain sh {plain / n * 1000:.2f} ms/step)")
print(f"per cached step: {cached / n * 1000:.2f} ms (whole cached run {cached:.3f} s)")
print(f"nw --help start-up: {med['nw --help'] * 1000:.0f} ms")
PY
