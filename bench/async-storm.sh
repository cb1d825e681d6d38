#!/usr/bin/env bash
# bench/async-storm.sh [CALLS] [MINIONS]: CALLS concurrent
# `overlord call '*' test.ping --async` (default 200) on one state directory,
# to MINIONS real minion processes on loopback (default 10), then wait, with
# nobody running `job status` (which would restart drivers), until every
# accepted job is FINISHED or no driver is left.
#
# It prints how many calls were accepted (exit 0, a job ID), how many were
# refused and why, how long the calls took, how many jobs settled (FINISHED)
# and when, how many with every entry ok (and the errors of the others), and
# the jobs left open with no driver alive. It exits 1 unless every call was
# accepted and every job settled.
#
# It builds the binaries (or takes them from $BIN). Every process it started
# (minions, and drivers still alive at the end) is stopped and every file
# removed on exit. Environment: BIN, SETTLE (seconds to wait for the jobs to
# settle, default 300), LOCK_TIMEOUT (--lock-timeout of the calls, the
# default if unset), KEEP=1 to keep the temporary directory.
set -euo pipefail

usage() { echo "usage: $0 [CALLS] [MINIONS]   (env BIN, SETTLE, LOCK_TIMEOUT, KEEP)" >&2; exit 2; }
[[ $# -le 2 ]] || usage
calls=${1:-200}
n=${2:-10}
settle=${SETTLE:-300}
[[ $calls =~ ^[1-9][0-9]*$ && $n =~ ^[1-9][0-9]*$ && $settle =~ ^[1-9][0-9]*$ ]] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/overlord-storm.XXXXXX")
pids=()

. "$root/bench/lib.sh"
ms() { echo $(($(date +%s%N) / 1000000)); }

find_binaries
start_fleet "$n" 'm%02d'
mkdir -p "$dir/calls"
overlord call '*' test.ping >/dev/null || { log "the check call failed"; exit 1; }
log "$n minions up; starting $calls concurrent calls"

lt=()
[[ -n ${LOCK_TIMEOUT:-} ]] && lt=(--lock-timeout "$LOCK_TIMEOUT")
t0=$(ms)
cpids=()
for ((i = 0; i < calls; i++)); do
	(
		s=$(ms)
		rc=0
		"$bin/overlord" "${lt[@]}" call '*' test.ping --async >"$dir/calls/$i.out" 2>"$dir/calls/$i.err" || rc=$?
		echo "$rc $(($(ms) - s))" >"$dir/calls/$i.rc"
	) &
	cpids+=($!)
done
wait "${cpids[@]}" || true
t1=$(ms)

accepted=0 refused=0 slowest=0
: >"$dir/ids"
for ((i = 0; i < calls; i++)); do
	read -r rc took <"$dir/calls/$i.rc"
	((took > slowest)) && slowest=$took
	if [[ $rc == 0 ]] && grep -Eq '^[0-9a-f-]{36}$' "$dir/calls/$i.out"; then
		accepted=$((accepted + 1))
		cat "$dir/calls/$i.out" >>"$dir/ids"
	else
		refused=$((refused + 1))
	fi
done
echo "machine: $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "calls: $accepted of $calls accepted, $refused refused; all returned in $((t1 - t0)) ms (slowest $slowest ms)"
if ((refused)); then
	cat "$dir"/calls/*.err | sed 's/(waited.*//' | sort | uniq -c | sort -rn | head -5
fi

# Wait for the jobs to settle. job list reads the store only: it starts
# no driver.
alive() { ! flock -n "$OVERLORD_STATE_DIR/drivers/$1.lock" true 2>/dev/null; }
deadline=$(($(ms) + settle * 1000))
while :; do
	# Which drivers are gone is read before the store: a driver writes its
	# job's end before it lets go of its lock, so a job open in the store
	# read after its lock was seen free will not settle on its own.
	declare -A gone=()
	for l in "$OVERLORD_STATE_DIR"/drivers/*.lock; do
		[[ -e $l ]] || continue
		id=${l##*/}
		id=${id%.lock}
		alive "$id" || gone[$id]=1
	done
	overlord job list --limit 0 -o json >"$dir/list.json" 2>"$dir/list.err" || { sleep 1; continue; }
	open=$(jq -r '[.[] | select(.state != "FINISHED")] | length' "$dir/list.json")
	if ((open == 0)); then break; fi
	stalled=0
	for id in $(jq -r '.[] | select(.state != "FINISHED") | .job_id' "$dir/list.json"); do
		[[ -n ${gone[$id]:-} ]] && stalled=$((stalled + 1))
	done
	unset gone
	if ((stalled == open)) || (($(ms) > deadline)); then break; fi
	sleep 1
done
t2=$(ms)
total=$(sort -u "$dir/ids" | wc -l)
settled=$(jq -r --rawfile ids "$dir/ids" '[.[] | select(.state == "FINISHED" and (.job_id as $i | $ids | contains($i)))] | length' "$dir/list.json")
allok=$(jq -r --rawfile ids "$dir/ids" '[.[] | select(.state == "FINISHED" and .summary.ok == .summary.total and (.job_id as $i | $ids | contains($i)))] | length' "$dir/list.json")
open=$(jq -r '[.[] | select(.state != "FINISHED")] | length' "$dir/list.json")
echo "settled: $settled of $total accepted jobs FINISHED ($allok with every entry ok), $open still open; $(((t2 - t0) / 1000)) s after the first call"
failed=$(jq -r '.[] | select(.state == "FINISHED" and .summary.ok != .summary.total) | .job_id' "$dir/list.json")
if [[ -n $failed ]]; then
	# job status of a FINISHED job starts no driver.
	echo "entries not ok in FINISHED jobs, by error:"
	for id in $failed; do
		overlord job status "$id" -o json | jq -r '.minions[] | select(.ok | not) | "\(.error.kind): \(.error.message)"' || true
	done | sed 's/[0-9a-f-]\{36\}/ID/g; s/pid [0-9]*/pid N/g' | sort | uniq -c | sort -rn | head -5
fi
if ((open)); then
	echo "open jobs (state, ok/total, driver alive):"
	for id in $(jq -r '.[] | select(.state != "FINISHED") | .job_id' "$dir/list.json"); do
		a=no; alive "$id" && a=yes
		jq -r --arg id "$id" --arg a "$a" '.[] | select(.job_id == $id) | "  \(.job_id) \(.state) \(.summary.ok)/\(.summary.total) driver \($a)"' "$dir/list.json"
	done | head -20
	echo "driver log lines mentioning the store:"
	cat "$OVERLORD_STATE_DIR"/drivers/*.log 2>/dev/null | grep -iE 'busy|lock|error' | sed 's/^time=[^ ]* //; s/job=[^ ]* //' | sort | uniq -c | sort -rn | head -5
fi
# Entries a minion refused past its limit on running jobs (64 per identity,
# docs/jobs.md) are FINISHED with that error: settled, not ok.
[[ $accepted == "$calls" && $settled == "$calls" ]]
