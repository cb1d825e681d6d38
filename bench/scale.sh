#!/usr/bin/env bash
# bench/scale.sh [N...]: `overlord call '*' test.ping -o json` through
# `overlord serve` to N emulated minions (bench/emulator), for each N given
# (default: 10000 50000), flat (every minion reached by the service) and
# behind trees of gateways (GATEWAYS, default "0 2 10": 0 is flat, K is K
# gateways with N/K minions behind each), side by side in one run.
#
# For each N and layout it makes a fresh state directory and CA; with K
# gateways, registers them (`overlord gateway add`), installs each in a
# state directory of its own (`overlord gateway init`) and starts its
# `overlord serve` on loopback. It starts one emulator process per PER
# minions (default 10,000: the open-files limit is per process, and each
# minion called holds a connection), each registering its minions in
# overlord.db as `minion add` does (with --via its gateway) and serving
# them on its own loopback listener; then the overlord's `overlord serve`.
# One call warms the pools (its time is the cold call: a TLS handshake per
# minion), then hyperfine times RUNS calls (default 5). It reports, per N
# and layout:
#   - the wall time of the cold call and of the warm ones (median, min-max);
#   - CPU (user + sys) per warm call of the CLI (hyperfine's mean), of the
#     overlord's service, of the gateways and of the emulators (from
#     /proc/PID/stat before and after the timed calls); and the service's
#     and gateways' CPU during the cold call;
#   - the peak RSS (VmHWM) of the service, of the gateways (the largest)
#     and of the emulators (the largest), and of one CLI call; the open
#     file descriptors of the service and of the first gateway;
#   - how many entries were not ok, if any, by error, in the cold call and
#     in one more call after the timed ones (the timed calls count
#     whatever their exit status: hyperfine -i).
# With ASYNC=1 it also times one async job to every minion after the warm
# calls (`call --async`, then `job status --wait`): submit to FINISHED,
# with the service's and the gateways' CPU.
# With PROFILE=1 the service and the first gateway run bench/profiled (the
# overlord command with Go's profiler on a loopback port, OVERLORD_PPROF):
# a CPU profile of each is taken during one more warm call and the top of
# `go tool pprof` printed, with the service's heap after it. KEEP=1 keeps
# the profiles in $dir/N-K/.
#
# It builds the binaries and the emulator (or takes them from $BIN, which
# must hold overlord, emulator and, for PROFILE, profiled). Every process
# it starts is stopped and every file removed on exit. Needs hyperfine, jq
# and, for PROFILE, curl and go.
#
# Environment: BIN, RUNS, PER, GATEWAYS, TIMEOUT (--timeout of each call,
# default 600s), FORKS (--forks of each call), PROFILE=1, KEEP=1.
set -euo pipefail

usage() { echo "usage: $0 [N...]   (env BIN, RUNS, PER, GATEWAYS, TIMEOUT, FORKS, PROFILE, KEEP)" >&2; exit 2; }
sizes=("$@")
((${#sizes[@]})) || sizes=(10000 50000)
read -r -a layouts <<<"${GATEWAYS:-0 2 10}"
runs=${RUNS:-5}
per=${PER:-10000}
timeout=${TIMEOUT:-600s}
for v in "${sizes[@]}" "$runs" "$per"; do [[ $v =~ ^[1-9][0-9]*$ ]] || usage; done
for v in "${layouts[@]}"; do [[ $v =~ ^[0-9]+$ ]] || usage; done
for c in hyperfine jq; do command -v $c >/dev/null || { echo "$0 needs $c" >&2; exit 2; }; done
if [[ ${PROFILE:-} == 1 ]]; then for c in curl go; do command -v $c >/dev/null || { echo "PROFILE=1 needs $c" >&2; exit 2; }; done; fi
if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $((per + 512)) ]]; then
	echo "the open-files limit ($(ulimit -Hn)) is too low for $per minions per emulator: lower PER" >&2
	exit 2
fi
ulimit -n "$(ulimit -Hn)"

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/overlord-scale.XXXXXX")
pids=()

. "$root/bench/lib.sh"

if [[ -n ${BIN:-} ]]; then
	bin=$(cd "$BIN" && pwd)
else
	bin=$dir/bin
	log "building into $bin"
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$bin/" ./cmd/overlord &&
		CGO_ENABLED=0 go build -trimpath -o "$bin/emulator" ./bench/emulator &&
		CGO_ENABLED=0 go build -trimpath -o "$bin/profiled" ./bench/profiled)
fi
need=(overlord emulator)
[[ ${PROFILE:-} == 1 ]] && need+=(profiled)
for b in "${need[@]}"; do [[ -x $bin/$b ]] || { log "no $b in $bin"; exit 2; }; done

# cpu PID...: user + sys CPU of the processes so far, in ms, summed.
tck=$(getconf CLK_TCK)
cpu() {
	local p s=0
	for p in "$@"; do s=$((s + $(awk -v t="$tck" '{print int(($14 + $15) * 1000 / t)}' "/proc/$p/stat"))); done
	echo "$s"
}
# hwm PID...: the largest peak RSS among the processes, in MiB.
hwm() {
	local p m=0 v
	for p in "$@"; do
		v=$(awk '/^VmHWM:/ {printf "%d", $2 / 1024}' "/proc/$p/status")
		((v > m)) && m=$v
	done
	echo "$m"
}
stopall() {
	if ((${#pids[@]})); then
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	pids=()
}
ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_serving FILE PID WHAT: until the emulator's FILE says it serves.
wait_serving() {
	until grep -qs '^serving' "$1"; do
		if ! kill -0 "$2" 2>/dev/null; then
			log "$3 did not start:"
			cat "${1%.out}.err" >&2
			exit 1
		fi
		sleep 0.2
	done
}
# wait_port PORT PID LOG: until a process listens on PORT.
wait_port() {
	local try
	for ((try = 0; ; try++)); do
		listening "$1" && return
		if ((try >= 300)) || ! kill -0 "$2" 2>/dev/null; then
			log "a service did not start:"
			cat "$3" >&2
			exit 1
		fi
		sleep 0.1
	done
}
# failures FILE WHAT: the entries of a call's JSON that are not ok, by error.
failures() {
	local bad
	bad=$(jq -r '[.minions | to_entries[] | select(.value.ok | not)] | length' "$1")
	((bad)) || return 0
	log "  $bad entries not ok in the $2:"
	jq -r '.minions | to_entries[] | select(.value.ok | not) | "\(.value.state) \(.value.error.kind // ""): \(.value.error.message // "")"' "$1" |
		sed 's/em[0-9]\{5\}/emN/g; s/[0-9]\+\.[0-9.]\+:[0-9]\+/ADDR/g' | sort | uniq -c | sort -rn | head -5 >&2
}
# profile ADDR SECS OUT: a CPU profile of the process serving pprof at ADDR.
profile() { curl -sS -o "$3" "http://$1/debug/pprof/profile?seconds=$2"; }
top_of() {
	go tool pprof -top "$@" 2>/dev/null | sed -E 's/Run\[.*\]\.func/Run[...].func/; s/^ *Showing top.*//; /^File:|^Build ID:|^Time:/d'
}

# measure N K: one row of the table, N minions, flat (K = 0) or behind K
# gateways.
measure() {
	local n=$1 k=$2 run=$dir/$1-$2 layout=flat
	((k)) && layout="$k gateways"
	mkdir -p "$run"
	export OVERLORD_STATE_DIR=$run/overlord
	overlord ca init >/dev/null
	local gpids=() gpprof="" g port share first count e t0 setup
	for ((g = 1; g <= k; g++)); do
		port=$(free_port)
		overlord gateway add "gw$g" --addr "127.0.0.1:$port" --bundle-out "$run/gw$g.pem" >/dev/null
		OVERLORD_STATE_DIR=$run/gw$g overlord gateway init --bundle "$run/gw$g.pem" >/dev/null
		local serve=("$bin/overlord")
		if [[ ${PROFILE:-} == 1 && $g == 1 ]]; then
			gpprof=127.0.0.1:$(free_port)
			serve=(env "OVERLORD_PPROF=$gpprof" "$bin/profiled")
		fi
		OVERLORD_STATE_DIR=$run/gw$g "${serve[@]}" serve --listen "127.0.0.1:$port" --log-level warn 2>"$run/gw$g.log" &
		gpids+=($!)
		pids+=($!)
		wait_port "$port" "$!" "$run/gw$g.log"
	done
	# The emulators: each gateway's share of the minions (all of them,
	# flat) in emulators of at most PER.
	local epids=() efiles=() shares=$((k ? k : 1))
	t0=$(ms)
	for ((g = 0; g < shares; g++)); do
		share=$((n / shares + (g < n % shares ? 1 : 0)))
		first=$((g * (n / shares) + (g < n % shares ? g : n % shares)))
		local via=()
		((k)) && via=(--via "gw$((g + 1))")
		for ((e = 0; e * per < share; e++)); do
			count=$((share - e * per < per ? share - e * per : per))
			"$bin/emulator" --count "$count" --first "$((first + e * per))" --name 'em%05d' "${via[@]}" \
				>"$run/emu$g-$e.out" 2>"$run/emu$g-$e.err" &
			epids+=($!)
			efiles+=("$run/emu$g-$e.out")
			pids+=($!)
		done
	done
	for ((e = 0; e < ${#epids[@]}; e++)); do
		wait_serving "${efiles[e]}" "${epids[e]}" "emulator ${efiles[e]}"
	done
	setup=$(($(ms) - t0))
	log "N=$n, $layout: ${#epids[@]} emulator(s) up in $setup ms"

	local serve=("$bin/overlord") pprof=""
	if [[ ${PROFILE:-} == 1 ]]; then
		pprof=127.0.0.1:$(free_port)
		serve=(env "OVERLORD_PPROF=$pprof" "$bin/profiled")
	fi
	port=$(free_port)
	"${serve[@]}" serve --listen "127.0.0.1:$port" --log-level warn 2>"$run/serve.log" &
	local spid=$!
	pids+=("$spid")
	wait_port "$port" "$spid" "$run/serve.log"
	local try
	for ((try = 0; ; try++)); do
		overlord job list --limit 1 -v 2>&1 | grep -q 'via the service' && break
		((try < 100)) || { log "the CLI does not go through the service"; exit 1; }
		sleep 0.1
	done

	local call=("$bin/overlord" call '*' test.ping -o json --timeout "$timeout")
	[[ -n ${FORKS:-} ]] && call+=(--forks "$FORKS")
	# The cold call: the service (or the gateways) dial and handshake
	# with every minion.
	local s0 g0 e0 s1 g1 e1 cold coldcpu
	s0=$(cpu "$spid") g0=$(cpu "${gpids[@]}")
	t0=$(ms)
	"${call[@]}" >"$run/cold.json" || true
	cold=$(($(ms) - t0))
	coldcpu="service $(($(cpu "$spid") - s0))"
	((k)) && coldcpu+=", gateways $(($(cpu "${gpids[@]}") - g0))"
	log "  cold call: $cold ms ($coldcpu ms CPU), $(jq -c .summary "$run/cold.json")"
	failures "$run/cold.json" "cold call"

	s0=$(cpu "$spid") g0=$(cpu "${gpids[@]}") e0=$(cpu "${epids[@]}")
	hyperfine --style basic -N -i --runs "$runs" --export-json "$run/hyperfine.json" \
		-n "N=$n $layout" "$(printf '%q ' "${call[@]}")" >&2 || true
	s1=$(cpu "$spid") g1=$(cpu "${gpids[@]}") e1=$(cpu "${epids[@]}")
	# One more call for the CLI's peak RSS and the entries' outcome.
	/usr/bin/time -f '%M' -o "$run/cli.rss" "${call[@]}" >"$run/last.json" || true
	local bad
	bad=$(jq -r '[.minions | to_entries[] | select(.value.ok | not)] | length' "$run/last.json")
	failures "$run/last.json" "last call"
	if [[ ${PROFILE:-} == 1 ]]; then
		local secs cp=()
		secs=$(jq -r '.results[0].max | ceil + 1' "$run/hyperfine.json")
		profile "$pprof" "$secs" "$run/serve.pprof" &
		cp+=($!)
		if [[ -n $gpprof ]]; then
			profile "$gpprof" "$secs" "$run/gw1.pprof" &
			cp+=($!)
		fi
		sleep 0.2 # the profiles start
		"${call[@]}" >/dev/null || true
		wait "${cp[@]}"
		echo "### N=$n, $layout: where the service's CPU goes during one warm call ($secs s profile)"
		top_of -nodecount=12 "$bin/profiled" "$run/serve.pprof"
		top_of -cum -nodecount=30 "$bin/profiled" "$run/serve.pprof" | grep -E 'overlord|net/http|crypto/tls|encoding/json|runtime.gcBgMarkWorker|syscall.Syscall$|Duration' | head -20
		if [[ -n $gpprof ]]; then
			echo "### N=$n, $layout: gateway gw1"
			top_of -nodecount=12 "$bin/profiled" "$run/gw1.pprof"
			top_of -cum -nodecount=30 "$bin/profiled" "$run/gw1.pprof" | grep -E 'overlord|net/http|crypto/tls|encoding/json|runtime.gcBgMarkWorker|syscall.Syscall$|Duration' | head -20
		fi
		curl -sS -o "$run/serve.heap" "http://$pprof/debug/pprof/heap"
		echo "### N=$n, $layout: the service's heap after the calls (in use)"
		top_of -sample_index=inuse_space -nodecount=12 "$bin/profiled" "$run/serve.heap"
	fi
	if [[ ${ASYNC:-} == 1 ]]; then
		# An async job to every minion, on the warm pools: from the
		# submit to FINISHED, with the service's and gateways' CPU.
		local id at as ag abad as0 ag0 at0
		as0=$(cpu "$spid") ag0=$(cpu "${gpids[@]}")
		at0=$(ms)
		id=$("$bin/overlord" call '*' test.ping --async --timeout "$timeout")
		"$bin/overlord" job status "$id" --wait --timeout "$timeout" -o json >"$run/async.json" || true
		at=$(($(ms) - at0))
		as=$(($(cpu "$spid") - as0)) ag=-
		((k)) && ag="$(($(cpu "${gpids[@]}") - ag0)) ms"
		abad=$(jq -r '[.minions | to_entries[] | select(.value.ok | not)] | length' "$run/async.json")
		failures "$run/async.json" "async job"
		log "  async job: $at ms to FINISHED (service $as ms CPU, gateways $ag), $abad not ok"
		arows+=("| $n | $layout | $at ms | $as ms | $ag | $abad |")
		printf '%s\n' "${arows[-1]}" >>"$dir/async-rows.md"
	fi
	local fds gfds=""
	fds=$(ls "/proc/$spid/fd" | wc -l)
	((k)) && gfds=", gw1 $(ls "/proc/${gpids[0]}/fd" | wc -l)"
	local gcpu=- grss=-
	((k)) && gcpu="$(((g1 - g0) / runs)) ms" && grss="$(hwm "${gpids[@]}") MiB"
	rows+=("$(jq -r --arg n "$n" --arg layout "$layout" --arg emus "${#epids[@]}" --arg cold "$cold ms ($coldcpu ms CPU)" \
		--arg scpu "$(((s1 - s0) / runs))" --arg gcpu "$gcpu" --arg ecpu "$(((e1 - e0) / runs))" \
		--arg srss "$(hwm "$spid")" --arg grss "$grss" --arg erss "$(hwm "${epids[@]}")" --arg crss "$(($(tail -n 1 "$run/cli.rss") / 1024))" \
		--arg fds "$fds$gfds" --arg bad "$bad" --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
		'.results[0] | "| \($n) | \($layout) | \($emus) | \($cold) | \(.median * 1000 | round) ms (\(.min * 1000 | round)-\(.max * 1000 | round)) | \(.user * 1000 | round) + \(.system * 1000 | round) ms | \($scpu) ms | \($gcpu) | \($ecpu) ms | \($srss) MiB | \($grss) | \($erss) MiB | \($crss) MiB | \($fds) | \($bad) | \($load) |"' \
		"$run/hyperfine.json")")
	printf '%s\n' "${rows[-1]}" >>"$dir/rows.md"
	stopall
	[[ ${KEEP:-} == 1 ]] || rm -rf "$run"
}

echo "machine: $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), $(go version 2>/dev/null | awk '{print $3}'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
rows=() arows=()
for n in "${sizes[@]}"; do
	for k in "${layouts[@]}"; do
		measure "$n" "$k"
	done
done
echo
echo "| minions | layout | emulators | cold call (CPU) | warm call, median (min-max) | CLI CPU user + sys | service CPU per call | gateways' CPU per call | emulators' CPU per call | service peak RSS | gateway peak RSS (largest) | emulator peak RSS (largest) | CLI peak RSS | fds open | not ok | load after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if ((${#arows[@]})); then
	echo
	echo "| minions | layout | async job, submit to FINISHED | service CPU | gateways' CPU | not ok |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${arows[@]}"
fi
