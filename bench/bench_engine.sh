#!/usr/bin/env bash
# Engine overhead on a 1,000-step pipeline of trivial steps, against running the same
# commands with plain /bin/sh (the work itself), and `nw --help` start-up; then, where strace
# is installed, what one cold step costs in system calls that do not depend on the machine's
# load: inodes created, links, renames, removals, fsyncs and processes (bench/README-engine.md).
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

# Before each cold run the previous run's files are moved aside, not deleted (all are deleted at the end): on
# ext4 without a journal the inode allocator skips inodes deleted in the last minute or more, so deleting
# thousands of them right before a run would charge every file the run creates (bench/README-engine.md).
mkdir -p "$work/trash"
cat > "$work/aside.sh" <<SH
t=\$(mktemp -d "$work/trash/XXXXXX")
for d in store plain nix-workflow-output; do if [ -e "$work/\$d" ]; then mv "$work/\$d" "\$t/"; fi; done
sync
SH
cd "$work"
hyperfine --style basic --warmup 1 --runs 5 --export-json "$work/cold.json" \
  --prepare "sh $work/aside.sh" \
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

command -v strace >/dev/null || { echo "(strace not installed: no per-step inventory)"; exit 0; }
# Per-step inventory: the difference between a cold run of 60 steps and one of 20, divided by 40, so
# what a run does once (store layout, journal, watchdog) cancels out. Deterministic, unlike timings.
for n in 20 60; do
  mkdir -p "$work/inv$n"
  printf 'from nixlib import output\nsteps = [output(f"echo {i} > $out/v") for i in range(%d)]\n' "$n" \
    > "$work/inv$n/pipeline.py"
  (cd "$work/inv$n" && NIX_WORKFLOW_STORE="$work/inv$n/store" strace -f -qq -o "$work/inv$n/trace" \
    -e trace=mkdir,mkdirat,open,openat,creat,symlink,symlinkat,link,linkat,rename,renameat,renameat2,unlink,unlinkat,rmdir,fsync,fdatasync,syncfs,sync,execve \
    "$NW" run pipeline.py -q -j 1 >/dev/null 2>&1)
done
python3 - "$work" <<'PY'
import collections, re, sys
work = sys.argv[1]

def count(path):
    c = collections.Counter()
    for line in open(path):
        m = re.match(r"\d+ +(\w+)\((.*)\) += (-?\d+)", line)
        if not m or m.group(3).startswith("-"):
            continue  # failed calls (EEXIST, ENOENT) create nothing
        call, args = m.group(1), m.group(2)
        if call in ("mkdir", "mkdirat"):
            c["directories created"] += 1
        elif call in ("open", "openat", "creat") and ("O_CREAT" in args or call == "creat"):
            c["files created (or truncated)"] += 1
        elif call in ("symlink", "symlinkat"):
            c["symlinks created"] += 1
        elif call in ("link", "linkat"):
            c["hard links (no new inode)"] += 1
        elif call.startswith("rename"):
            c["renames"] += 1
        elif call in ("unlink", "unlinkat", "rmdir"):
            c["removals"] += 1
        elif call in ("fsync", "fdatasync", "syncfs", "sync"):
            c["fsyncs"] += 1
        elif call == "execve":
            c["processes executed"] += 1
    return c

small, large = count(f"{work}/inv20/trace"), count(f"{work}/inv60/trace")
print("\nper cold step (strace, a 60-step run minus a 20-step run, / 40; the step's own `echo > $out/v` "
      "is one of the files and one of the processes):")
for key in sorted(set(small) | set(large)):
    print(f"  {key:30s} {(large[key] - small[key]) / 40:5.2f}")
PY
