#!/usr/bin/env bash
# Nix calls and time of a pipeline of N steps sharing one Nix-pinned env, in Python and in Nix:
# cold (evaluate, build, run), fully cached re-run, and re-run after editing one step. Nix calls
# are counted with a PATH shim that logs every nix-instantiate / nix-store invocation.
#   bash bench/bench_nix_eval.sh [STEPS]        (results: bench/README-nix.md)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
NW="$PWD/.venv/bin/nw"
work=$(mktemp -d /tmp/nw-bench-nix.XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# the shim: log, then run the real tool
mkdir -p "$work/shim"
for t in nix-instantiate nix-store; do
  real=$(command -v "$t")
  printf '#!/bin/sh\necho "%s $*" >> "%s/calls"\nexec "%s" "$@"\n' "$t" "$work" "$real" > "$work/shim/$t"
  chmod +x "$work/shim/$t"
done
export PATH="$work/shim:$PATH"

# one package (a /bin/sh-built tool) that every step uses
mkdir -p "$work/pkgs"
cat > "$work/pkgs/default.nix" <<'NIX'
{ }:
{
  tool = builtins.derivation {
    name = "bench-tool"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "PATH=/usr/bin:/bin; mkdir -p $out/bin; printf '#!/bin/sh\\necho \"$@\"\\n' > $out/bin/tool; chmod 555 $out/bin/tool" ];
  };
}
NIX

python3 - "$N" "$work" <<'PY'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/pipeline.py", "w") as f:
    f.write("from nixlib import Env, output\n")
    f.write(f"tools = Env(packages=['tool'], nixpkgs={{'path': '{work}/pkgs'}})\n")
    f.write(f"steps = [output(f\"{{tools['tool']}}/bin/tool {{i}} > $out/v\") for i in range({n})]\n")
with open(f"{work}/pipeline.nix", "w") as f:
    f.write("let inherit ((import <nixworkflow>).lib) output;\n")
    f.write(f"  pkgs = import {work}/pkgs {{ }};\n")
    f.write("in builtins.listToAttrs (builtins.genList (i: { name = \"s${toString i}\";\n")
    f.write(f"  value = output \"${{pkgs.tool}}/bin/tool ${{toString i}} > $out/v\"; }}) {n})\n")
PY

cd "$work"
calls() { if [ -f "$work/calls" ]; then wc -l < "$work/calls"; else echo 0; fi; }
measure() {  # name, command...: one timed run; prints "name|seconds|nix calls"
  local name=$1; shift
  local before; before=$(calls)
  local t0; t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  local t1; t1=$(date +%s.%N)
  echo "$name|$(echo "$t1 - $t0" | bc)|$(( $(calls) - before ))"
}

rows=()
for front in py nix; do
  export NIX_WORKFLOW_STORE="$work/store-$front"
  rows+=("$(measure "$front: cold ($N steps: evaluate, build tool, run)" "$NW" run "pipeline.$front" -q -j 2)")
  rows+=("$(measure "$front: fully cached re-run" "$NW" run "pipeline.$front" -q)")
  hyperfine --style none --warmup 1 --runs 5 --export-json "$work/$front.json" "$NW run pipeline.$front -q" >/dev/null
  rows+=("$front: fully cached re-run, median of 5 (hyperfine)|$(python3 -c "import json,statistics;print(round(statistics.median(json.load(open('$work/$front.json'))['results'][0]['times']),3))")|0")
done
# editing one step: Python re-evaluates nothing in Nix (the env is unchanged); Nix re-evaluates the file once
sed -i 's/range(/range(1, 1 + /' pipeline.py
rows+=("$(NIX_WORKFLOW_STORE="$work/store-py" measure "py: one step changed (env unchanged)" "$NW" run pipeline.py -q)")
sed -i 's/toString i} >/toString (i + 1)} >/' pipeline.nix
rows+=("$(NIX_WORKFLOW_STORE="$work/store-nix" measure "nix: one step changed (experiment re-evaluated)" \
  "$NW" run pipeline.nix -q)")
single=$(measure "one nix-instantiate of the env, for scale" nix-instantiate "$work/pkgs" -A tool)

echo "| run | time (s) | Nix processes |"
echo "|---|---|---|"
for r in "${rows[@]}" "$single"; do
  IFS='|' read -r name t c <<< "$r"
  printf '| %s | %.3f | %s |\n' "$name" "$t" "$c"
done
IFS='|' read -r _ t_eval _ <<< "$single"
printf '\nWithout the evaluation cache, one evaluation per step would add about %.1f s to every re-run of %s steps.\n' \
  "$(echo "$t_eval * $N" | bc)" "$N"
