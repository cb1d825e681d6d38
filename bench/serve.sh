#!/usr/bin/env bash
# bench/serve.sh N [RUNS]: `overlord call '*' test.ping` to N real minion
# processes on loopback through the overlord service (`overlord serve`, its
# warm keep-alive connections) and with --direct (a handshake per minion), side
# by side in one hyperfine run, and the ratio.
#
# It builds the binaries (or takes them from $BIN), makes a CA and N minions
# (bench/lib.sh), starts `overlord serve`, warms its pool with one call, then
# times RUNS calls each way (default 10). It also reports the service's
# memory and connections. Every process it started is stopped and every file
# removed on exit. Needs hyperfine and jq.
#
# With ASYNC=J it then submits J async jobs (`command.run 'sleep 1'`) to ten
# of the minions, 8 `call --async` at a time, and reports what they cost the
# service while they run (goroutines, threads, TCP connections), the driver
# processes (none are expected) and how long until all J are FINISHED.
#
# Environment: BIN, RUNS, FORKS (--forks of the timed calls), ASYNC, KEEP=1
# to keep the temporary directory.
set -euo pipefail

usage() { echo "usage: $0 N [RUNS]   (N minions; env BIN, FORKS, KEEP)" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
n=$1
runs=${2:-${RUNS:-10}}
[[ $n =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] || usage
command -v hyperfine >/dev/null && command -v jq >/dev/null || { echo "$0 needs hyperfine and jq" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/overlord-serve.XXXXXX")
pids=()

. "$root/bench/lib.sh"

need=$((2 * n + 256))
if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $need ]]; then
	log "the open-files limit ($(ulimit -Hn)) is too low for $n minions; want $need"
	exit 2
fi

find_binaries
log "making a CA and $n minions in $dir"
start_fleet "$n" 'm%04d'

port=$(free_port)
"$bin/overlord" serve --listen "127.0.0.1:$port" --log-level warn 2>"$dir/serve.log" &
spid=$!
pids+=("$spid")
for ((try = 0; ; try++)); do
	[[ -S $OVERLORD_STATE_DIR/overlord.sock ]] && "$bin/overlord" job list --limit 1 -v 2>&1 | grep -q 'via the service' && break
	if ((try >= 200)) || ! kill -0 "$spid" 2>/dev/null; then
		log "overlord serve did not start:"
		cat "$dir/serve.log" >&2
		exit 1
	fi
	sleep 0.05
done

call=("$bin/overlord" call '*' test.ping)
[[ -n ${FORKS:-} ]] && call+=(--forks "$FORKS")
# One call each way checks that every minion answers; the first warms the
# service's pool.
for way in "" --direct; do
	summary=$("${call[@]}" $way -o json | jq -c .summary) || { log "the check call ($way) failed: $summary"; exit 1; }
	log "check call ${way:-through the service}: $summary"
done

echo "fleet: $n minion processes on loopback; $runs timed runs each of: ${call[*]#"$bin/"} [--direct]"
hyperfine --style basic -N --warmup 1 --runs "$runs" --export-json "$dir/hyperfine.json" \
	-n service "$(printf '%q ' "${call[@]}")" -n direct "$(printf '%q ' "${call[@]}") --direct" >&2
jq -r '.results as $r |
	"through the service: median \($r[0].median * 1000 | round) ms (min \($r[0].min * 1000 | round), max \($r[0].max * 1000 | round))",
	"--direct:            median \($r[1].median * 1000 | round) ms (min \($r[1].min * 1000 | round), max \($r[1].max * 1000 | round))",
	"the service is \($r[1].median / $r[0].median * 10 | round / 10)x faster (median over median)"' "$dir/hyperfine.json"
rss=$(awk '/^VmRSS:/ {printf "%.0f MiB", $2 / 1024}' "/proc/$spid/status")
conns=$(ss -Htnp 2>/dev/null | grep -c "pid=$spid," || true)
echo "the service: RSS $rss, $conns TCP connections open (one per minion called)"

[[ -n ${ASYNC:-} ]] || exit 0
[[ $ASYNC =~ ^[1-9][0-9]*$ ]] || usage
sock=$OVERLORD_STATE_DIR/overlord.sock
busy() {
	local ping
	ping=$(curl -s --unix-socket "$sock" http://overlord/local/ping)
	printf 'goroutines %s, jobs driven %s, threads %s, TCP connections %s, driver processes %s\n' \
		"$(jq .goroutines <<<"$ping")" "$(jq .driving <<<"$ping")" \
		"$(awk '/^Threads:/ {print $2}' "/proc/$spid/status")" \
		"$(ss -Htnp 2>/dev/null | grep -c "pid=$spid," || true)" \
		"$(pgrep -fc -- "--state-dir $OVERLORD_STATE_DIR .*job drive" || true)"
}
echo "idle: $(busy)"
t0=$(date +%s%N)
seq "$ASYNC" | xargs -P 8 -I{} "$bin/overlord" call 'm000[0-9]' command.run 'sleep 1' --async >/dev/null
t1=$(date +%s%N)
echo "$ASYNC async jobs on 10 minions submitted in $(((t1 - t0) / 1000000)) ms"
echo "while they run: $(busy)"
for ((try = 0; ; try++)); do
	open=$("$bin/overlord" job list --limit 0 -o json | jq '[.[] | select(.state != "FINISHED")] | length')
	((open == 0)) && break
	((try % 10 == 0)) && echo "  $open open: $(busy)"
	((try < 1200)) || { log "jobs still open after 2 minutes"; exit 1; }
	sleep 0.1
done
t2=$(date +%s%N)
failed=$("$bin/overlord" job list --limit 0 -o json | jq '[.[] | select(.summary.failed > 0)] | length')
echo "all $ASYNC FINISHED $(((t2 - t0) / 1000000)) ms after the first submit; jobs with a failed minion: $failed"
echo "after: $(busy)"
