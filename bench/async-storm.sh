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
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#pids[@]})); then
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	# Drivers still alive hold their lock files: stop them by pid, found
	# through their command line naming this state directory.
	for p in $(pgrep -f -- "--state-dir $dir/overlord .*job drive" 2>/dev/null || true); do
		kill "$p" 2>/dev/null || true
	done
	if [[ ${KEEP:-} == 1 ]]; then
		echo "kept $dir" >&2
	else
		rm -rf "$dir"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '%s\n' "$*" >&2; }
ms() { echo $(($(date +%s%N) / 1000000)); }

if [[ -n ${BIN:-} ]]; then
	bin=$(cd "$BIN" && pwd)
else
	bin=$dir/bin
	log "building into $bin"
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$bin/" ./cmd/overlord ./cmd/minion)
fi
for b in overlord minion; do
	[[ -x $bin/$b ]] || { log "no $b in $bin"; exit 2; }
done
export OVERLORD_STATE_DIR=$dir/overlord

declare -A taken=()
for p in $(ss -Htln 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}'); do taken[$p]=1; done
lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (lo - 10000)))
		[[ -z ${taken[$p]:-} ]] || continue
		taken[$p]=1
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

overlord() { "$bin/overlord" "$@"; }
overlord ca init >/dev/null
mkdir -p "$dir/bundles" "$dir/minions" "$dir/calls"
ports=()
for ((i = 0; i < n; i++)); do
	name=$(printf 'm%02d' "$i")
	port=$(free_port)
	ports+=("$port")
	overlord minion add "$name" --addr "127.0.0.1:$port" --bundle-out "$dir/bundles/$name.pem" >/dev/null
	"$bin/minion" --state-dir "$dir/minions/$name" init --bundle "$dir/bundles/$name.pem" >/dev/null
	"$bin/minion" --state-dir "$dir/minions/$name" serve --listen "127.0.0.1:$port" --log-level warn \
		2>"$dir/minions/$name.log" &
	pids+=($!)
done
for ((i = 0; i < n; i++)); do
	for ((try = 0; ; try++)); do
		listening "${ports[i]}" && break
		if ((try >= 200)) || ! kill -0 "${pids[i]}" 2>/dev/null; then
			log "minion $i (port ${ports[i]}) did not start"
			exit 1
		fi
		sleep 0.05
	done
done
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
	overlord job list --limit 0 -o json >"$dir/list.json" 2>"$dir/list.err" || { sleep 1; continue; }
	open=$(jq -r '[.[] | select(.state != "FINISHED")] | length' "$dir/list.json")
	if ((open == 0)); then break; fi
	# Open jobs with no driver alive will not settle on their own.
	stalled=0
	for id in $(jq -r '.[] | select(.state != "FINISHED") | .job_id' "$dir/list.json"); do
		alive "$id" || stalled=$((stalled + 1))
	done
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
