#!/usr/bin/env bash
# benches/slow-readers.sh -- memory under slow readers (slowhttptest -X), loopback only, bounded.
#
# Starts the binary with the repository's development certificate in front of a python3 origin
# serving a 20 MB file, then runs slowhttptest in slow-read mode: CLIENTS connections that
# advertise a 512-byte window and read 32 bytes every 1-3 s, for LENGTH s. Every 5 s it prints
# the proxy's RSS and peak RSS, its open client connections and the established connections to
# the origin; then once more after the clients left. Back-pressure keeps the memory flat; every
# connection is released when the clients go.
#
#   PINPROXY_BIN  the binary (default target/release/pinproxy)
#   CLIENTS       slow readers (default 200), LENGTH test seconds (default 30)
#
# Needs python3, curl, slowhttptest (apt-get install -y slowhttptest). Every process it starts is
# stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PINPROXY_BIN:-$ROOT/target/release/pinproxy}
CLIENTS=${CLIENTS:-200}
LENGTH=${LENGTH:-30}

die() { echo "slow-readers: $*" >&2; exit 1; }
for c in python3 curl slowhttptest ss; do command -v "$c" >/dev/null || die "needs $c"; done
[ -x "$BIN" ] || die "no binary at $BIN (cargo build --release, or set PINPROXY_BIN)"

WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cp -r "$ROOT/certs" "$ROOT/pins" "$WORK/"
mkdir "$WORK/www"
head -c 20000000 /dev/urandom > "$WORK/www/big.bin"
read -r ADMIN LISTEN ORIGIN < <(python3 -c '
import socket
ports = []
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
    ports.append(s.getsockname()[1])
print(*ports)
')
sed -e "s#url = \"http://127.0.0.1:9901\"#url = \"http://127.0.0.1:$ORIGIN\"#" \
    -e "s/127.0.0.1:9901\"$/127.0.0.1:$ADMIN\"/" \
    -e "s/127.0.0.1:8443\"/127.0.0.1:$LISTEN\"/" \
    -e 's/access = true/access = false/' \
    "$ROOT/config.toml" > "$WORK/config.toml"

(cd "$WORK/www" && exec python3 -m http.server "$ORIGIN" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
"$BIN" -c "$WORK/config.toml" 2>"$WORK/proxy.log" &
PROXY=$!
pids+=("$PROXY")
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null &&
        curl -sf -o /dev/null "http://127.0.0.1:$ORIGIN/" && break
    sleep 0.1
done

rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MB  ", $1, $2 / 1024}' "/proc/$PROXY/status"; }
state() {
    local open up
    open=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^pinproxy_connections_open/ {print $2}')
    up=$(ss -tn state established "( dport = :$ORIGIN )" | tail -n +2 | wc -l)
    echo "$(rss)client connections $open, origin connections $up"
}
echo "idle:            $(state)"
curl -sk --resolve "localhost:$LISTEN:127.0.0.1" "https://localhost:$LISTEN/big.bin" -o /dev/null \
    -w "one download:    %{http_code} %{size_download} bytes\n"
echo "after it:        $(state)"
timeout $((LENGTH + 30)) slowhttptest -X -c "$CLIENTS" -r "$CLIENTS" -w 512 -y 1024 -n 5 -z 32 -k 3 \
    -u "https://localhost:$LISTEN/big.bin" -l "$LENGTH" -p 3 >"$WORK/slow.txt" 2>&1 &
SLOW=$!
pids+=("$SLOW")
for t in $(seq 5 5 "$LENGTH"); do
    sleep 5
    echo "t=${t}s:$(printf '%*s' $((9 - ${#t})) '')$(state)"
done
wait "$SLOW" || true
echo "clients gone:    $(state)"
for _ in $(seq 100); do
    [ "$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^pinproxy_connections_open/ {print $2}')" = 0 ] && break
    sleep 0.1
done
echo "1-10 s later:    $(state)"
