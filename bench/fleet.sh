#!/usr/bin/env bash
# bench/fleet.sh N [RUNS]: time `overlord call '*' test.ping` on a fleet of N
# real minion processes on loopback.
#
# It builds the binaries (or takes them from $BIN), makes a CA and enrols N
# minions with `overlord minion add`, starts each as its own `minion serve`
# on a free 127.0.0.1 port, checks that one call reaches them all, then times
# RUNS calls (default 5) with hyperfine if it is installed, else with a loop.
# Every process it started is stopped and every file removed on exit.
#
# Environment: BIN (a directory holding overlord and minion), RUNS, CMD
# (time `command.run CMD` instead of test.ping, side by side with the same
# CMD run by N local shells: the floor; needs hyperfine), FORKS
# (--forks of the timed calls; the overlord's default if unset), KEEP=1 to
# keep the temporary directory (logs) after the run.
set -euo pipefail

usage() { echo "usage: $0 N [RUNS]   (N minions, RUNS timed calls; env BIN, FORKS, KEEP)" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
n=$1
runs=${2:-${RUNS:-5}}
[[ $n =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/overlord-fleet.XXXXXX")
pids=()

. "$root/bench/lib.sh"

# Each minion process needs a few files; the overlord needs one connection
# per minion in flight, and its Go runtime raises its soft limit to the hard
# one.
need=$((n + 256))
if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $need ]]; then
	log "the open-files limit ($(ulimit -Hn)) is too low for $n minions; want $need"
	exit 2
fi

find_binaries

log "making a CA and $n minions in $dir"
t0=$(date +%s%N)
start_fleet "$n" 'm%04d'
t1=$(date +%s%N)
log "fleet up: $n minions enrolled and started in $(((t1 - t0) / 1000000)) ms"
if [[ -r /proc/self/status ]]; then
	rss=$(for p in "${pids[@]}"; do awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null; done |
		awk -v n="$n" '{s += $1} END {printf "%.0f MiB in all, %.1f MiB each", s / 1024, s / 1024 / n}')
	log "minion memory (RSS): $rss"
fi

call=("$bin/overlord" call '*' test.ping)
[[ -n ${CMD:-} ]] && call=("$bin/overlord" call '*' command.run "$CMD")
[[ -n ${FORKS:-} ]] && call+=(--forks "$FORKS")
# With CMD, the floor: the same N commands as local shells, FORKS (or the
# overlord's default, 64) at a time, timed in the same hyperfine run.
[[ -n ${CMD:-} ]] && floor=(sh -c "seq $n | xargs -P ${FORKS:-64} -I{} sh -c $(printf '%q' "$CMD") >/dev/null")

# One call to check every minion answers (exit 0 means every minion ok),
# which also warms the page cache.
summary=$("${call[@]}" -o json | jq -c .summary) || { log "the check call failed: $summary"; exit 1; }
log "check call: $summary"

echo "fleet: $n minion processes on loopback; $runs timed runs of: ${call[*]#"$bin/"}"
if command -v hyperfine >/dev/null; then
	extra=()
	[[ -n ${CMD:-} ]] && extra=("$(printf '%q ' "${floor[@]}")")
	hyperfine --style basic -N --warmup 1 --runs "$runs" --export-json "$dir/hyperfine.json" \
		"$(printf '%q ' "${call[@]}")" "${extra[@]}" >&2
	[[ -n ${CMD:-} ]] && jq -r '"floor, \(.results[1].command): median \(.results[1].median * 1000 | round) ms; the call costs \(.results[0].median / .results[1].median * 100 | round / 100)x the floor"' "$dir/hyperfine.json"
	jq -r --argjson n "$n" '.results[0] |
		"wall ms: min \(.min * 1000 | round)  median \(.median * 1000 | round)  mean \(.mean * 1000 | round)  max \(.max * 1000 | round)  stddev \(.stddev * 1000 | round)",
		"per minion (median): \(.median * 1e6 / $n | round) us",
		"overlord process CPU (mean): user \(.user * 1000 | round) ms  sys \(.system * 1000 | round) ms"' \
		"$dir/hyperfine.json"
else
	: >"$dir/times"
	for ((r = 0; r < runs; r++)); do
		s=$(date +%s%N)
		/usr/bin/env time -f '%U %S' -o "$dir/cpu" "${call[@]}" >/dev/null 2>>"$dir/call.err" ||
			{ log "run $r failed:"; cat "$dir/call.err" >&2; exit 1; }
		e=$(date +%s%N)
		echo "$(((e - s) / 1000)) $(cat "$dir/cpu")" >>"$dir/times"
	done
	sort -n "$dir/times" | awk -v n="$n" '
		{ w[NR] = $1 / 1000; sum += w[NR]; u += $2; s += $3 }
		END {
			med = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2
			printf "wall ms: min %.0f  median %.0f  mean %.0f  max %.0f\n", w[1], med, sum / NR, w[NR]
			printf "per minion (median): %.0f us\n", med * 1000 / n
			printf "overlord process CPU (mean): user %.0f ms  sys %.0f ms\n", u * 1000 / NR, s * 1000 / NR
		}'
fi
