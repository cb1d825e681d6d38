#!/usr/bin/env bash
# bench/api.sh N [RUNS]: a synchronous test.ping to N real minion processes
# on loopback, made three ways against one `overlord serve`, side by side in
# one hyperfine run: POST /v1/jobs on the HTTP API (curl, with a client
# certificate: a new TLS connection per request), `overlord call` through
# the service's socket, and `overlord call --direct`. Each does the same
# fan-out on the same warm pool (but --direct), so the difference is the
# front door: curl and TLS against the CLI process and its socket.
#
# Builds the binaries (or takes them from $BIN), makes a CA, an API identity
# and N minions (bench/lib.sh). Every process it started is stopped and every
# file removed on exit. Needs hyperfine, curl and jq.
#
# Environment: BIN, RUNS, KEEP=1 to keep the temporary directory.
set -euo pipefail

usage() { echo "usage: $0 N [RUNS]   (N minions; env BIN, KEEP)" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
n=$1
runs=${2:-${RUNS:-10}}
[[ $n =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] || usage
for c in hyperfine curl jq; do command -v $c >/dev/null || { echo "$0 needs $c" >&2; exit 2; }; done

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/overlord-api.XXXXXX")
pids=()

. "$root/bench/lib.sh"

find_binaries
log "making a CA and $n minions in $dir"
start_fleet "$n" 'm%04d'
"$bin/overlord" ca client api-bench --bundle-out "$dir/api-bench.pem" >/dev/null

port=$(free_port)
"$bin/overlord" serve --listen "127.0.0.1:$port" --name overlord-bench --log-level warn 2>"$dir/serve.log" &
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

req='{"target": "*", "module": "test", "method": "ping"}'
curl=(curl -sS --fail-with-body --cert "$dir/api-bench.pem" --cacert "$OVERLORD_STATE_DIR/ca.crt"
	--resolve "overlord-bench:$port:127.0.0.1" -H 'Content-Type: application/json' -d "$req"
	-o /dev/null "https://overlord-bench:$port/v1/jobs")
call=("$bin/overlord" call '*' test.ping -o json)
# One of each checks that every minion answers and warms the pool.
summary=$(curl -sS --fail-with-body --cert "$dir/api-bench.pem" --cacert "$OVERLORD_STATE_DIR/ca.crt" \
	--resolve "overlord-bench:$port:127.0.0.1" -H 'Content-Type: application/json' -d "$req" \
	"https://overlord-bench:$port/v1/jobs" | jq -c .summary) || { log "the API call failed: $summary"; exit 1; }
log "check call through the API: $summary"
summary=$("${call[@]}" | jq -c .summary) || { log "the check call failed"; exit 1; }
log "check call through the CLI: $summary"

echo "fleet: $n minion processes on loopback; $runs timed runs each of: POST /v1/jobs (curl), overlord call, overlord call --direct"
hyperfine --style basic -N --warmup 1 --runs "$runs" --export-json "$dir/hyperfine.json" \
	-n api "$(printf '%q ' "${curl[@]}")" -n cli "$(printf '%q ' "${call[@]}")" \
	-n direct "$(printf '%q ' "${call[@]}") --direct" >&2
jq -r '.results as $r |
	"POST /v1/jobs (curl):   median \($r[0].median * 1000 | round) ms (min \($r[0].min * 1000 | round), max \($r[0].max * 1000 | round))",
	"overlord call:          median \($r[1].median * 1000 | round) ms (min \($r[1].min * 1000 | round), max \($r[1].max * 1000 | round))",
	"overlord call --direct: median \($r[2].median * 1000 | round) ms (min \($r[2].min * 1000 | round), max \($r[2].max * 1000 | round))",
	"the API takes \($r[0].median / $r[1].median * 100 | round / 100)x the time of the CLI through the service, \($r[0].median / $r[2].median * 100 | round / 100)x that of --direct"' "$dir/hyperfine.json"
