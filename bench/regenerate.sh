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
#                                        bench-results/ holds); call and
#                                        stream (not in the default set)
#                                        run without the NATS peer
#   bench/regenerate.sh cost             the node's CPU and packets per
#                                        message over QUIC and over TCP
#                                        beside NATS, like for like, one
#                                        run each (about 27 minutes)
#
# Results: bench-results/*.jsonl, HTML reports: bench-results/*/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
go build -o "$out/gonets" .
if [ "${1:-}" = cost ]; then
	# Each case beside NATS (one TCP connection per user, TLS 1.3: the
	# peer's defaults under gonets bench), at an offered load both carry;
	# then Gonets again over TLS on TCP.
	cost() {
		local name=$1
		shift
		rm -f "$out/cost-$name.jsonl"
		echo "### $name: gonets bench $*"
		"$out/gonets" bench "$@" --peer nats --out "$out/cost-$name.jsonl" >/dev/null
		"$out/gonets" bench "$@" --transport tcp --out "$out/cost-$name.jsonl" >/dev/null
		"$out/gonets" bench-summary "$out/cost-$name.jsonl"
		echo
	}
	cost chat-1k chat --users 1000 --rate 4000
	cost chat-10k chat --users 10000 --rate 2000
	cost group group --groups 20 --members 50 --rate 400
	cost channel channel --subscribers 1000 --rate 10
	exit
fi
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
	case "$scenario" in
	call | stream) ;; # no peer: NATS carries no media
	*)
		"$out/gonets" bench "$scenario" --peer nats --out "$out/$scenario-peer.jsonl" --report "$out/$scenario" >/dev/null
		;;
	esac
done
shopt -s nullglob
echo "## Gonets, median of 3 runs"
files=()
for s in storage sync chat group channel connect call stream; do
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
