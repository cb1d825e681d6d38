#!/usr/bin/env bash
# bench/scale.sh [N...]: `overlord call '*' test.ping -o json` through
# `overlord serve` to N emulated minions (bench/emulator), for each N given
# (default: 10000 50000).
#
# For each N it makes a fresh state directory and CA, starts one emulator
# process per PER minions (default 10,000: the open-files limit is per
# process, and each minion called holds a connection), each registering its
# minions in overlord.db as `minion add` does and serving them on its own
# loopback listener, then `overlord serve`. One call warms the service's
# pool (its time is the cold call: a TLS handshake per minion), then
# hyperfine times RUNS calls (default 5). It reports, per N:
#   - the wall time of the cold call and of the warm ones (median, min-max);
#   - CPU (user + sys) per warm call of the CLI (hyperfine's mean), of the
#     service and of the emulators (from /proc/PID/stat before and after);
#   - the peak RSS (VmHWM) of the service, of each emulator and of one CLI
#     call, and the service's open file descriptors;
#   - how many entries were not ok, if any, by error.
# With PROFILE=1 the service is bench/profiled (the overlord command with
# Go's profiler on a loopback port, OVERLORD_PPROF), and a CPU profile of
# it is taken during one more warm call: the top of `go tool pprof` is
# printed, the profile kept as $dir/nN/serve.pprof (with KEEP=1).
#
# It builds the binaries and the emulator (or takes them from $BIN, which
# must hold overlord, emulator and, for PROFILE, profiled). Every process
# it starts is stopped and every file removed on exit. Needs hyperfine, jq
# and, for PROFILE, curl and go.
#
# Environment: BIN, RUNS, PER, TIMEOUT (--timeout of each call, default
# 600s), FORKS (--forks of each call), PROFILE=1, KEEP=1 to keep the
# temporary directory.
set -euo pipefail

usage() { echo "usage: $0 [N...]   (env BIN, RUNS, PER, TIMEOUT, FORKS, PROFILE, KEEP)" >&2; exit 2; }
sizes=("$@")
((${#sizes[@]})) || sizes=(10000 50000)
runs=${RUNS:-5}
per=${PER:-10000}
timeout=${TIMEOUT:-600s}
for v in "${sizes[@]}" "$runs" "$per"; do [[ $v =~ ^[1-9][0-9]*$ ]] || usage; done
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

# cpu PID: user + sys CPU of a process so far, in ms.
tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{print int(($14 + $15) * 1000 / t)}' "/proc/$1/stat"; }
hwm() { awk '/^VmHWM:/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
stopall() {
	if ((${#pids[@]})); then
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	pids=()
}

echo "machine: $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), $(go version 2>/dev/null | awk '{print $3}'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
results=()
for n in "${sizes[@]}"; do
	run=$dir/n$n
	mkdir -p "$run"
	export OVERLORD_STATE_DIR=$run/overlord
	"$bin/overlord" ca init >/dev/null
	emus=$(((n + per - 1) / per))
	log "N=$n: $emus emulator(s) of up to $per minions"
	t0=$(date +%s%N)
	epids=()
	for ((e = 0; e < emus; e++)); do
		first=$((e * per))
		count=$((n - first < per ? n - first : per))
		"$bin/emulator" --count "$count" --first "$first" --name 'em%05d' >"$run/emu$e.out" 2>"$run/emu$e.err" &
		epids+=($!)
		pids+=($!)
	done
	for ((e = 0; e < emus; e++)); do
		until grep -qs '^serving' "$run/emu$e.out"; do
			if ! kill -0 "${epids[e]}" 2>/dev/null; then
				log "emulator $e did not start:"
				cat "$run/emu$e.err" >&2
				exit 1
			fi
			sleep 0.2
		done
	done
	setup=$((($(date +%s%N) - t0) / 1000000))
	log "  emulators up in $setup ms"

	serve=("$bin/overlord")
	if [[ ${PROFILE:-} == 1 ]]; then
		pprof=127.0.0.1:$(free_port)
		serve=(env "OVERLORD_PPROF=$pprof" "$bin/profiled")
	fi
	"${serve[@]}" serve --listen "127.0.0.1:$(free_port)" --log-level warn 2>"$run/serve.log" &
	spid=$!
	pids+=("$spid")
	for ((try = 0; ; try++)); do
		"$bin/overlord" job list --limit 1 -v 2>&1 | grep -q 'via the service' && break
		if ((try >= 300)) || ! kill -0 "$spid" 2>/dev/null; then
			log "overlord serve did not start:"
			cat "$run/serve.log" >&2
			exit 1
		fi
		sleep 0.1
	done

	call=("$bin/overlord" call '*' test.ping -o json --timeout "$timeout")
	[[ -n ${FORKS:-} ]] && call+=(--forks "$FORKS")
	# The cold call: the service dials and handshakes with every minion.
	t0=$(date +%s%N)
	"${call[@]}" >"$run/cold.json" || true
	cold=$((($(date +%s%N) - t0) / 1000000))
	log "  cold call: $cold ms, $(jq -c .summary "$run/cold.json")"

	s0=$(cpu "$spid")
	e0=0
	for p in "${epids[@]}"; do e0=$((e0 + $(cpu "$p"))); done
	hyperfine --style basic -N --runs "$runs" --export-json "$run/hyperfine.json" \
		-n "N=$n" "$(printf '%q ' "${call[@]}")" >&2 || log "  a timed call failed (exit status not 0)"
	s1=$(cpu "$spid")
	e1=0
	for p in "${epids[@]}"; do e1=$((e1 + $(cpu "$p"))); done
	# One more call for the CLI's peak RSS and the entries' outcome.
	/usr/bin/time -f '%M' -o "$run/cli.rss" "${call[@]}" >"$run/last.json" || true
	bad=$(jq -r '[.minions | to_entries[] | select(.value.ok | not)] | length' "$run/last.json")
	if ((bad)); then
		log "  $bad entries not ok in the last call:"
		jq -r '.minions | to_entries[] | select(.value.ok | not) | "\(.value.state) \(.value.error.kind // ""): \(.value.error.message // "")"' "$run/last.json" |
			sed 's/em[0-9]\{5\}/emN/g; s/[0-9]\+\.[0-9.]\+:[0-9]\+/ADDR/g' | sort | uniq -c | sort -rn | head -5 >&2
	fi
	if [[ ${PROFILE:-} == 1 ]]; then
		secs=$(jq -r '.results[0].max | ceil + 1' "$run/hyperfine.json")
		curl -sS -o "$run/serve.pprof" "http://$pprof/debug/pprof/profile?seconds=$secs" &
		cpid=$!
		sleep 0.2 # the profile starts
		"${call[@]}" >/dev/null || true
		wait "$cpid"
		echo "where the service's CPU goes during one warm call, N=$n (go tool pprof, $secs s profile):"
		go tool pprof -top -nodecount=20 "$bin/profiled" "$run/serve.pprof" 2>/dev/null | sed -n "1,28p" | sed -E "s/Run\[.*\]\.func/Run[...].func/"
		echo "cumulative:"
		go tool pprof -top -cum -nodecount=30 "$bin/profiled" "$run/serve.pprof" 2>/dev/null | sed -n "6,36p" | sed -E "s/Run\[.*\]\.func/Run[...].func/"
	fi
	erss=()
	for p in "${epids[@]}"; do erss+=("$(hwm "$p")"); done
	fds=$(ls "/proc/$spid/fd" | wc -l)
	results+=("$(jq -r --arg n "$n" --arg emus "$emus" --arg setup "$setup" --arg cold "$cold" \
		--arg scpu "$(((s1 - s0) / runs))" --arg ecpu "$(((e1 - e0) / runs))" \
		--arg srss "$(hwm "$spid")" --arg erss "${erss[*]}" --arg crss "$(($(cat "$run/cli.rss") / 1024))" \
		--arg fds "$fds" --arg bad "$bad" --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
		'.results[0] | "| \($n) flat | \($emus) | \($cold) ms | \(.median * 1000 | round) ms (\(.min * 1000 | round)-\(.max * 1000 | round)) | \(.user * 1000 | round) + \(.system * 1000 | round) ms | \($scpu) ms | \($ecpu) ms | \($srss) MiB, \($fds) fds | \($erss | split(" ") | join(", ")) MiB | \($crss) MiB | \($bad) | \($load) |"' \
		"$run/hyperfine.json")")
	stopall
	[[ ${KEEP:-} == 1 ]] || rm -rf "$run"
done
echo
echo "| minions | emulators | cold call | warm call, median (min-max) | CLI CPU user + sys | service CPU per call | emulators' CPU per call | service peak RSS, fds | emulators' peak RSS | CLI peak RSS | not ok | load after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
