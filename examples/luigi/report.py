"""Render stats.json (per-sensor n, mean, stdev) as a Markdown table on stdout."""
import json
import sys

with open(sys.argv[1]) as f:
    stats = json.load(f)
print("| sensor | n | mean | stdev |\n|---|---|---|---|")
for s, v in stats.items():
    print(f"| {s} | {v['n']} | {v['mean']} | {v['stdev']} |")
