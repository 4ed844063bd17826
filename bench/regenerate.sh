#!/usr/bin/env bash
# Regenerates the figures in BENCHMARKS.md: every scenario with its
# defaults, three times, then once more beside NATS; prints the markdown
# tables of the medians. Run from the repository root; takes about an hour
# on 2 cores. Results: bench-results/*.jsonl, reports: bench-results/*/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
go build -o "$out/gonets" .
for scenario in storage sync chat group channel connect; do
	for run in 1 2 3; do
		"$out/gonets" bench "$scenario" --out "$out/$scenario.jsonl" >/dev/null
	done
	"$out/gonets" bench "$scenario" --peer nats --out "$out/$scenario-peer.jsonl" --report "$out/$scenario" >/dev/null
done
echo "## Gonets, median of 3 runs"
"$out/gonets" bench-summary "$out"/{storage,sync,chat,group,channel,connect}.jsonl
echo
echo "## Beside NATS, one run each"
"$out/gonets" bench-summary "$out"/*-peer.jsonl
