#!/usr/bin/env bash
# `snakemake --executor nixworkflow` against Snakemake's default local executor, on a Snakefile of N
# independent jobs that each sleep S seconds and write 1 MB (distinct content per job):
#   1. cold run (empty store), 200 jobs, S=0:          nixworkflow / local            goal <= 1.3
#   2. all outputs deleted, 200 jobs, S=0.01:          nixworkflow cached / local     goal <= 0.5
#   3. all outputs deleted, 20 jobs, S=1:              nixworkflow cached / local     goal <= 0.05
#   and for 2 and 3: nixworkflow cached / Snakemake with nothing to do (outputs present)  goal <= 1.2
#   4. partly cached: one upstream job re-runs (its command changed) and writes the same bytes; the JOBS
#      jobs downstream of it are restored:                 nixworkflow / Snakemake with nothing to do
# Everything runs with -c 2 and Snakemake's default scheduler; medians of hyperfine runs, ratios
# computed from one run of this script. JOBS (default 200) scales scenarios 1, 2 and 4, e.g. a quick check:
#   bash bench/bench_snakemake.sh [RUNS] [JOBS]          # bash bench/bench_snakemake.sh 3 50
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
JOBS=${2:-200}
SM="$PWD/.venv/bin/snakemake"
work=$(mktemp -d /tmp/nw-bench-snakemake.XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export NIX_WORKFLOW_STORE="$work/store"

cat > "$work/Snakefile" <<'EOF'
N = int(config.get("jobs", 200))
SLEEP = config.get("sleep", 0)

rule all:
    input: expand("out/{i}.bin", i=range(N))

rule make:
    output: "out/{i}.bin"
    params: sleep=SLEEP
    shell: "sleep {params.sleep}; (echo {wildcards.i}; head -c 1048576 /dev/zero) > {output}"
EOF

# Scenario 4: every make job reads src.txt, whose rule's command changes each run (a token written by the
# prepare step) but whose output does not.
cat > "$work/Snakefile.partial" <<'SNAKEFILE'
N = int(config.get("jobs", 200))
TOKEN = open("token").read().strip()

rule all:
    input: expand("out/{i}.bin", i=range(N))

rule src:
    output: "src.txt"
    shell: "echo src > {output}; true " + TOKEN

rule make:
    input: "src.txt"
    output: "out/{i}.bin"
    shell: "(cat {input}; echo {wildcards.i}; head -c 1048576 /dev/zero) > {output}"
SNAKEFILE

cd "$work"
run() {  # NAME CONFIG PREPARE-LOCAL PREPARE-NW RUNS [EXTRA HYPERFINE ARGS...]
  local name=$1 config=$2 prep_local=$3 prep_nw=$4 runs=$5
  shift 5
  hyperfine --style basic --runs "$runs" --export-json "$work/$name.json" \
    --prepare "$prep_local" -n "local" "$SM -c 2 --config $config" \
    --prepare "$prep_nw" -n "nixworkflow" "$SM -c 2 --config $config --executor nixworkflow" "$@" >/dev/null
}
clean="rm -rf out .snakemake"

run cold "jobs=$JOBS sleep=0" "$clean" "$clean store" "$RUNS" \
  --prepare "$clean store" -n "nixworkflow-hardlink" \
  "$SM -c 2 --config jobs=$JOBS sleep=0 --executor nixworkflow --nixworkflow-link-mode hardlink"

# The cached runs also time Snakemake with nothing to do (outputs present): its start-up and DAG work,
# the floor under any executor.
cached() {  # NAME CONFIG RUNS [EXTRA HYPERFINE ARGS...]
  local name=$1 config=$2 runs=$3
  shift 3
  "$SM" -c 2 --config $config --executor nixworkflow >/dev/null 2>&1  # fill the store once
  run "$name" "$config" "$clean" "$clean" "$runs" \
    --prepare "$clean; $SM -c 2 --config $config --executor nixworkflow >/dev/null 2>&1" -n "nothing to do" \
    "$SM -c 2 --config $config --executor nixworkflow" "$@"
}
cached cached10ms "jobs=$JOBS sleep=0.01" "$RUNS"
cached cached1s "jobs=20 sleep=1" 3

partial="$SM -c 2 -s Snakefile.partial --config jobs=$JOBS --executor nixworkflow"
rm -rf out .snakemake; echo 0 > token && $partial >/dev/null 2>&1  # fill the store once
hyperfine --style basic --runs "$RUNS" --export-json "$work/partial.json" \
  --prepare "rm -rf out src.txt .snakemake; date +%s%N > token" -n "nixworkflow" "$partial" \
  --prepare "true" -n "nothing to do" "$partial" >/dev/null

python3 - "$work" "$JOBS" <<'PY'
import json, statistics, sys
work, jobs = sys.argv[1], sys.argv[2]
rows = [("cold", f"cold run, {jobs} jobs x 1 MB", "nixworkflow (cold) / local", 1.3),
        ("cached10ms", f"outputs deleted, {jobs} jobs of 10 ms x 1 MB", "nixworkflow (cached) / local (re-executing)",
         0.5),
        ("cached1s", "outputs deleted, 20 jobs of 1 s x 1 MB", "nixworkflow (cached) / local (re-executing)", 0.05)]
print("| scenario | local median (s) | nixworkflow median (s) | ratio | goal |\n|---|---|---|---|---|")
for key, label, what, goal in rows:
    res = {r["command"]: statistics.median(r["times"]) for r in json.load(open(f"{work}/{key}.json"))["results"]}
    ratio = res["nixworkflow"] / res["local"]
    verdict = "met" if ratio <= goal else "missed"
    print(f"| {label} | {res['local']:.2f} | {res['nixworkflow']:.2f} | {ratio:.2f} ({what}) | <= {goal} ({verdict}) |")
    if "nothing to do" in res:
        floor = res["nothing to do"]
        print(f"| {label}: Snakemake with nothing to do | | {floor:.2f} | {floor / res['local']:.2f} "
              "(start-up and DAG work alone) | |")
        cost = res["nixworkflow"] / floor
        print(f"| {label}: nixworkflow (cached) / nothing to do | | | {cost:.2f} (the floor) | "
              f"<= 1.2 ({'met' if cost <= 1.2 else 'missed'}) |")
    if "nixworkflow-hardlink" in res:
        hl = res["nixworkflow-hardlink"]
        print(f"| {label}, --nixworkflow-link-mode hardlink | {res['local']:.2f} | {hl:.2f} | {hl / res['local']:.2f} "
              "(outputs shared with the store, not copied) | |")
res = {r["command"]: statistics.median(r["times"]) for r in json.load(open(f"{work}/partial.json"))["results"]}
print(f"| partly cached: 1 job re-runs with the same bytes, {jobs} jobs of 1 MB downstream restored | | "
      f"{res['nixworkflow']:.2f} | {res['nixworkflow'] / res['nothing to do']:.2f} (/ nothing to do, "
      f"{res['nothing to do']:.2f} s; includes one job's run and Snakemake's 1 s rate-limiter wait at exit) | |")
PY
