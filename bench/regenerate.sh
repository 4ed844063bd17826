#!/usr/bin/env bash
# Regenerates the figures in BENCHMARKS.md: every scenario with its
# defaults, three times, then once more beside NATS; group and channel
# also three times with the generator in two processes (--procs 2).
# Prints the markdown tables of the medians. Run from the repository root;
# takes about an hour on 2 cores, most of it connect's 100,000 sessions.
#
#   bench/regenerate.sh                  every scenario
#   bench/regenerate.sh chat group       just these (their files are
#                                        replaced; the tables cover what
#                                        bench-results/ holds)
#
# Results: bench-results/*.jsonl, HTML reports: bench-results/*/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
go build -o "$out/gonets" .
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
	scenarios=(storage sync chat group channel connect)
fi
for scenario in "${scenarios[@]}"; do
	rm -f "$out/$scenario.jsonl" "$out/$scenario-peer.jsonl" "$out/$scenario-procs2.jsonl"
	for run in 1 2 3; do
		"$out/gonets" bench "$scenario" --out "$out/$scenario.jsonl" >/dev/null
	done
	case "$scenario" in
	group | channel)
		for run in 1 2 3; do
			"$out/gonets" bench "$scenario" --procs 2 --out "$out/$scenario-procs2.jsonl" >/dev/null
		done
		;;
	esac
	"$out/gonets" bench "$scenario" --peer nats --out "$out/$scenario-peer.jsonl" --report "$out/$scenario" >/dev/null
done
shopt -s nullglob
echo "## Gonets, median of 3 runs"
files=()
for s in storage sync chat group channel connect; do
	[ -f "$out/$s.jsonl" ] && files+=("$out/$s.jsonl")
done
"$out/gonets" bench-summary "${files[@]}"
procs=("$out"/*-procs2.jsonl)
if [ ${#procs[@]} -gt 0 ]; then
	echo
	echo "## With --procs 2, median of 3 runs"
	"$out/gonets" bench-summary "${procs[@]}"
fi
echo
echo "## Beside NATS, one run each"
"$out/gonets" bench-summary "$out"/*-peer.jsonl
