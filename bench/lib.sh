# bench/lib.sh: the fleet set-up the bench scripts share. Sourced, not run.
# The script sets root (the repository), dir (its temporary directory) and
# pids (an array of the processes it starts) before sourcing it; from then
# on, exiting stops them and removes dir (cleanup).

log() { printf '%s\n' "$*" >&2; }

# cleanup, on exit: stops the processes in pids and any job driver of the
# state directory (detached: they hold their jobs' locks), then removes
# dir, unless KEEP=1.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#pids[@]})); then
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
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

# find_binaries sets bin to $BIN, or builds the binaries into $dir/bin,
# and points OVERLORD_STATE_DIR into $dir.
find_binaries() {
	if [[ -n ${BIN:-} ]]; then
		bin=$(cd "$BIN" && pwd)
	else
		bin=$dir/bin
		log "building into $bin"
		(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$bin/" ./cmd/overlord ./cmd/minion)
	fi
	local b
	for b in overlord minion; do
		[[ -x $bin/$b ]] || { log "no $b in $bin"; exit 2; }
	done
	export OVERLORD_STATE_DIR=$dir/overlord
}

# Ports: below the kernel's ephemeral range, not listened on now, and not
# taken by an earlier minion of this run. A minion that loses a port to a
# race fails to start and is reported.
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

# start_fleet N FORMAT makes a CA and N minions named by printf FORMAT,
# enrols and starts each on its own loopback port (their pids appended to
# pids, their ports in ports), and waits until every one listens.
start_fleet() {
	local n=$1 format=$2 i try name port
	overlord ca init >/dev/null
	mkdir -p "$dir/bundles" "$dir/minions"
	ports=()
	for ((i = 0; i < n; i++)); do
		name=$(printf "$format" "$i")
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
				name=$(printf "$format" "$i")
				log "minion $name (port ${ports[i]}) did not start:"
				tail -n 5 "$dir/minions/$name.log" >&2 || true
				exit 1
			fi
			sleep 0.05
		done
	done
}
