#!/usr/bin/env bash
# Hashing speed of nixlib against the real `nix-hash` (the budget is in shared/DESIGN.md §10):
#   - a 512 MiB file:               nixlib.nar at least 0.85x nix-hash's throughput
#   - a tree of 50,000 small files: nixlib.nar at least as fast as nix-hash
#   - the same tree, unchanged, re-hashed through the stat memo: ten times faster than nix-hash
#     (and, for information, the 512 MiB file through the memo)
# Usage: bash bench/bench_hash.sh          (needs nix-hash and hyperfine; about a minute)
# Everything is created in a temporary directory (not the store) and removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PY:-$repo/.venv/bin/python}
runs=${RUNS:-5}

for tool in nix-hash hyperfine; do
  command -v "$tool" >/dev/null || { echo "bench_hash: $tool is required (apt-get install nix-bin hyperfine)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/nw-bench-hash.XXXXXX")
trap 'rm -rf "$work"' EXIT
big=$work/big.bin
tree=$work/tree
memo=$work/memo

echo "bench_hash: creating a 512 MiB file and a 50,000-file tree in $work" >&2
head -c $((512 << 20)) /dev/urandom >"$big"
"$py" - "$tree" <<'EOF'
import os, random, sys
rng = random.Random(42)
root = sys.argv[1]
for d in range(100):                      # 100 directories x 500 files, 0-4 KiB each
    sub = os.path.join(root, f"d{d:03}")
    os.makedirs(sub)
    for f in range(500):
        path = os.path.join(sub, f"f{f:04}.dat")
        with open(path, "wb") as out:
            out.write(rng.randbytes(rng.randrange(4096)))
        if f % 50 == 0:
            os.chmod(path, 0o755)
EOF

# Bytecode caching as in a normal installation (some environments disable it for the checkout).
unset PYTHONDONTWRITEBYTECODE
"$py" -c 'import nixlib.nar, nixlib.statmemo'

check() {  # the two tools must agree before their speed means anything
  local want got
  want=$(nix-hash --type sha256 --base32 "$1")
  got=$("${@:2}")
  [ "$want" = "$got" ] || { echo "bench_hash: MISMATCH on $1: nix-hash $want, nixlib $got" >&2; exit 1; }
}
check "$big" "$py" -m nixlib.nar "$big"
check "$tree" "$py" -m nixlib.nar "$tree"
sleep 2  # the stat memo does not record trees changed within the last 2 s (racy timestamps)
check "$tree" "$py" -m nixlib.statmemo "$tree" "$memo"
check "$big" "$py" -m nixlib.statmemo "$big" "$memo"
[ "$(ls "$memo" | wc -l)" = 2 ] || { echo "bench_hash: the stat memo did not record both inputs" >&2; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
hf() {  # hf NAME COMMAND...: median timings of a set of commands into $work/NAME.json
  local name=$1; shift
  hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/$name.json" "$@" >&2
}
hf file "nix-hash --type sha256 --base32 $big" "$py -m nixlib.nar $big"
hf tree "nix-hash --type sha256 --base32 $tree" "$py -m nixlib.nar $tree"
hf memo "nix-hash --type sha256 --base32 $tree" "$py -m nixlib.statmemo $tree $memo"
hf bigmemo "nix-hash --type sha256 --base32 $big" "$py -m nixlib.statmemo $big $memo"
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

"$py" - "$work" "$load_before" "$load_after" "$runs" <<'EOF'
import json, os, platform, subprocess, sys
work, load_before, load_after, runs = sys.argv[1:]
rows = [
    ("file", "512 MiB file", "`python -m nixlib.nar`", 0.85),
    ("tree", "50,000 small files", "`python -m nixlib.nar`", 1.0),
    ("memo", "50,000 small files, unchanged", "`python -m nixlib.statmemo` (memo hit)", 10.0),
    ("bigmemo", "512 MiB file, unchanged", "`python -m nixlib.statmemo` (memo hit)", None),
]
nix_version = subprocess.run(["nix-hash", "--version"], capture_output=True, text=True).stdout.strip()
print(f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, {nix_version}, "
      f"hyperfine --warmup 1 --runs {runs}; load average before {load_before}, after {load_after}\n")
print("| input | nixlib command | nix-hash median | nixlib median | speed vs nix-hash | goal "
      "| nix-hash CPU | nixlib CPU | CPU ratio |")
print("|---|---|---:|---:|---:|---|---:|---:|---:|")
for name, what, ours, goal in rows:
    with open(os.path.join(work, f"{name}.json")) as f:
        nix, mine = json.load(f)["results"]
    ratio = nix["median"] / mine["median"]
    cpu_nix, cpu_mine = nix["user"] + nix["system"], mine["user"] + mine["system"]
    verdict = "—" if goal is None else f"≥ {goal:g}×: {'met' if ratio >= goal else 'NOT met'}"
    print(f"| {what} | {ours} | {nix['median'] * 1e3:.0f} ms | {mine['median'] * 1e3:.0f} ms | {ratio:.2f}× "
          f"| {verdict} | {cpu_nix * 1e3:.0f} ms | {cpu_mine * 1e3:.0f} ms | {cpu_nix / cpu_mine:.2f}× |")
print("\nspeed = nix-hash median / nixlib median (above 1: nixlib is faster); CPU = mean user + system "
      "time of the process and its children, less sensitive than wall time to other load on the machine.")
EOF
