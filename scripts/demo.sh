#!/usr/bin/env bash
# make demo: three minions on loopback, a ping and a command.run, async
# jobs, then the same through the overlord service, then everything
# stopped and removed. Usage: scripts/demo.sh BINDIR
set -euo pipefail
bin=$(cd "${1:-bin}" && pwd)
export PATH="$bin:$PATH"
dir=$(mktemp -d "${TMPDIR:-/tmp}/overlord-demo.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	# Job drivers and runners are detached; their command lines name $dir.
	pkill -f -- "$dir" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# A loopback port nobody is listening on, below the ephemeral range
# (32768-60999), where outgoing connections take theirs.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# Wait until something listens on 127.0.0.1:$1.
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "minion on port $1 did not start" >&2
	return 1
}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

export OVERLORD_STATE_DIR="$dir/overlord"
step overlord ca init
overlord ca init

for n in 1 2 3; do
	port=$(free_port)
	step overlord minion add "web$n" --addr "127.0.0.1:$port" --bundle-out "$dir/web$n.pem"
	overlord minion add "web$n" --addr "127.0.0.1:$port" --bundle-out "$dir/web$n.pem"
	minion --state-dir "$dir/web$n" init --bundle "$dir/web$n.pem" >/dev/null
	minion --state-dir "$dir/web$n" serve --listen "127.0.0.1:$port" --log-level warn &
	pids+=($!)
	wait_port "$port"
done

step overlord minion list
overlord minion list

step overlord call "'*'" test.ping
overlord call '*' test.ping

step overlord call "'web*'" command.run "'echo hello from \$(hostname); uname -s'" -o json
overlord call 'web*' command.run 'echo hello from $(hostname); uname -s' -o json

step overlord call -b "'web[1-3]'" command.run -- uname -sr
overlord call -b 'web[1-3]' command.run -- uname -sr

step overlord call "'*'" command.run "'echo upgrading; sleep 2; echo finished'" --timeout 1s "   # waits 1s, exit 4: the job goes on"
overlord call '*' command.run 'echo upgrading; sleep 2; echo finished' --timeout 1s || test $? -eq 4
late=$(overlord job list -o json | sed -n 's/^ *"job_id": "\(.*\)",$/\1/p' | head -n 1)
step overlord job status "$late" --wait -b
overlord job status "$late" --wait --timeout 60s -b

step overlord call "'*'" command.run "'echo started; sleep 1; echo done'" --async
id=$(overlord call '*' command.run 'echo started; sleep 1; echo done' --async)
echo "$id"

step overlord job status "$id"
overlord job status "$id" || true

step overlord job status "$id" --wait --timeout 60s -o json
overlord job status "$id" --wait --timeout 60s -o json

step overlord job list
overlord job list

# The service: commands go through it while it runs (-v says so), calls
# skip the TLS handshakes, and it drives async jobs itself.
sport=$(free_port)
uport=$(free_port)
step overlord serve --listen "127.0.0.1:$sport" --name demo-overlord --ui "127.0.0.1:$uport" "&"
overlord serve --listen "127.0.0.1:$sport" --name demo-overlord --ui "127.0.0.1:$uport" --log-level warn 2>"$dir/serve.log" &
pids+=($!)
wait_port "$sport"
wait_port "$uport"
step overlord call "'*'" test.ping -v
overlord call '*' test.ping -v 2>&1 | grep -v DEBUG
step overlord call "'*'" command.run "'sleep 1; echo driven by the service'" --async
id=$(overlord call '*' command.run 'sleep 1; echo driven by the service' --async)
echo "$id"
step overlord job status "$id" --wait -b
overlord job status "$id" --wait -b

# The same calls as JSON: on standard input, and over the HTTP API with an
# identity of the overlord role (here the state directory's own).
step "echo '{\"target\": \"web1\", \"module\": \"test\", \"method\": \"ping\"}' | overlord transmit"
echo '{"target": "web1", "module": "test", "method": "ping"}' | overlord transmit
if command -v curl >/dev/null; then
	state=$OVERLORD_STATE_DIR
	step curl --cert "$state/overlord.crt" --key "$state/overlord.key" --cacert "$state/ca.crt" \
		--resolve "demo-overlord:$sport:127.0.0.1" "https://demo-overlord:$sport/v1/jobs?limit=2"
	curl -sS --cert "$state/overlord.crt" --key "$state/overlord.key" --cacert "$state/ca.crt" \
		--resolve "demo-overlord:$sport:127.0.0.1" "https://demo-overlord:$sport/v1/jobs?limit=2"
fi
# The dashboard: open this link in a browser while the service runs.
step overlord ui url
overlord ui url

# A gateway: another 'overlord serve', in its own state directory (on its
# own machine, in real life), that reaches minions for this overlord.
gport=$(free_port)
step overlord gateway add gw1 --addr "127.0.0.1:$gport" --bundle-out "$dir/gw1.pem"
overlord gateway add gw1 --addr "127.0.0.1:$gport" --bundle-out "$dir/gw1.pem"
step overlord --state-dir "$dir/gw1" gateway init --bundle "$dir/gw1.pem" "&&" overlord --state-dir "$dir/gw1" serve --listen "127.0.0.1:$gport" "&"
overlord --state-dir "$dir/gw1" gateway init --bundle "$dir/gw1.pem"
overlord --state-dir "$dir/gw1" serve --listen "127.0.0.1:$gport" --log-level warn 2>"$dir/gw1.log" &
pids+=($!)
wait_port "$gport"
port=$(free_port)
step overlord minion add web4 --addr "127.0.0.1:$port" --via gw1 --bundle-out "$dir/web4.pem"
overlord minion add web4 --addr "127.0.0.1:$port" --via gw1 --bundle-out "$dir/web4.pem"
minion --state-dir "$dir/web4" init --bundle "$dir/web4.pem" >/dev/null
minion --state-dir "$dir/web4" serve --listen "127.0.0.1:$port" --log-level warn &
pids+=($!)
wait_port "$port"
step overlord call "'*'" test.ping
overlord call '*' test.ping
step overlord call web4 test.ping -o json "   # its entry says which gateway carried the call"
overlord call web4 test.ping -o json

echo
echo "demo done: stopping ${#pids[@]} processes (the minions, the service and the gateway), removing $dir"
