#!/usr/bin/env bash
# The showcase, offline: the same experiment written in Python (experiment.py: tools by content,
# run with the host's python3) and in Nix (experiment.nix: the tools are Nix derivations, built
# here by Nix and pinned by store path). Each runs twice: the second run is entirely cached.
# Then the comparison, the exact tool paths of a step, and the Python version with Nix tools
# (experiment_env.py), which keys every step as experiment.nix does and so re-runs nothing.
#
# Uses the store $NIX_WORKFLOW_STORE, else /nix-workflow (nw creates it 1777 when permitted).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NW=${NW:-"$here/../../.venv/bin/nw"}
cd "$here"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
object() { basename "$(readlink nix-workflow-output/comparison)"; }

say "nw run experiment.py   (Python; tools are static inputs run by the host's python3)"
"$NW" run experiment.py -q
say "nw run experiment.py   again: every step is served from the store"
"$NW" run experiment.py -q
py_object=$(object)

if ! command -v nix-instantiate >/dev/null; then
  say "Nix is not installed: skipping experiment.nix (apt-get install nix-bin, then run this again)"
  exit 0
fi
say "nw run experiment.nix  (Nix; the five tools are derivations built offline by Nix)"
"$NW" run experiment.nix -q
say "nw run experiment.nix  again: evaluation cached, tools present, every step cached"
"$NW" run experiment.nix -q
nix_object=$(object)

say "the comparison (nix-workflow-output/comparison/comparison.json)"
cat nix-workflow-output/comparison/comparison.json
echo
if [ "$py_object" = "$nix_object" ]; then
  echo "Python and Nix versions produced byte-identical comparisons: one store object, $nix_object"
else
  echo "comparison objects: Python $py_object, Nix $nix_object"
fi

say "nw show model_base     (the exact Nix store paths the step ran with)"
"$NW" show model_base

say "nw run experiment_env.py  (Python with the Nix-built tools: the same recipe keys, nothing runs)"
"$NW" run experiment_env.py -q

say "nw checkpoints model_base  (published while it trained; predict_base_epoch2 started on epoch-2 meanwhile)"
"$NW" checkpoints model_base
say "nw pin model_base --checkpoint epoch-2  (its object, and the line that locks it in experiment.nix)"
"$NW" pin model_base --checkpoint epoch-2 --file experiment.nix
