#!/usr/bin/env bash
# benches/rss.sh -- peak RSS (VmHWM) of the proxy in the two memory-heavy shapes of the harness:
# HTTP/2 with 32 connections x 10 streams (1 KiB bodies) and HTTP/1.1 with 64 keep-alive
# connections fetching 64 KiB bodies. Peak RSS barely moves with CPU noise, unlike req/s, so this
# runs on a busy machine too. Each shape starts a fresh proxy (one worker, like the harness).
#
#   PINPROXY_BIN  the binary (default target/release/pinproxy)
#   N_H2, N_H1    requests per shape (default 100000, 20000)
#
# Loopback only, free ports, bounded by request counts and `timeout`; every process it starts is
# stopped by PID. Extra environment (MIMALLOC_*, ...) passes through to the proxy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PINPROXY_BIN:-$ROOT/target/release/pinproxy}
N_H2=${N_H2:-100000}
N_H1=${N_H1:-20000}

die() { echo "rss.sh: $*" >&2; exit 1; }
for c in openssl nginx h2load curl python3; do command -v "$c" >/dev/null || die "needs $c"; done
[ -x "$BIN" ] || die "no binary at $BIN"
work=$(mktemp -d)      # what the proxy reads (and watches)
scratch=$(mktemp -d)   # everything else
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work" "$scratch"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/certs" "$scratch/nginx/html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/certs/key.pem" -out "$work/certs/cert.pem" 2>/dev/null
head -c 65536 /dev/urandom > "$scratch/nginx/html/64k"
chmod 755 "$scratch" "$scratch/nginx" "$scratch/nginx/html"; chmod 644 "$scratch/nginx/html/64k"   # nginx workers run as nobody
backend=$(free_port)
body=$(head -c 1024 /dev/zero | tr '\0' x)
cat > "$scratch/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $scratch/nginx/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $scratch/nginx; proxy_temp_path $scratch/nginx; fastcgi_temp_path $scratch/nginx;
    uwsgi_temp_path $scratch/nginx; scgi_temp_path $scratch/nginx;
    server {
        listen 127.0.0.1:$backend;
        root $scratch/nginx/html;
        location = / { return 200 "$body"; }
        location = /64k { }
    }
}
EOF
nginx -c "$scratch/nginx/nginx.conf" -p "$scratch/nginx" &
pids+=($!)

# shape NAME PATH H2LOAD-ARGS...: a fresh proxy, one bounded load, its peak RSS in MiB.
shape() {
    local name=$1 path=$2; shift 2
    local port proxy
    port=$(free_port)
    rm -rf "$work/proxy"; mkdir -p "$work/proxy"
    WORK_DIR=$work/proxy PROXY_THREADS=1 PINPROXY_BIN=$BIN \
        "$ROOT/benches/pinproxy-adapter.sh" start "$port" "$work/certs/cert.pem" "$work/certs/key.pem" "127.0.0.1:$backend" \
        > "$scratch/$name.log" 2>&1 &
    proxy=$!
    pids+=("$proxy")
    for _ in $(seq 1 100); do curl -sk -o /dev/null "https://127.0.0.1:$port/" && break; sleep 0.1; done
    local idle
    idle=$(awk '/VmHWM/ { print $2 }' "/proc/$proxy/status")
    timeout 300 h2load "$@" "https://127.0.0.1:$port$path" > "$scratch/$name.h2load" 2>&1 || { cat "$scratch/$name.h2load" >&2; die "h2load failed ($name)"; }
    grep -q " 0 failed, 0 errored" "$scratch/$name.h2load" || { grep requests: "$scratch/$name.h2load" >&2; die "errors in $name"; }
    local peak
    peak=$(awk '/VmHWM/ { print $2 }' "/proc/$proxy/status")
    kill -TERM "$proxy"; wait "$proxy" 2>/dev/null || true
    printf '%s: peak RSS %.1f MiB (%.1f MiB after start-up)\n' "$name" "$(echo "$peak / 1024" | bc -l)" "$(echo "$idle / 1024" | bc -l)"
}

shape h2-32x10-1k / -n "$N_H2" -c 32 -m 10
shape h1-64-64k /64k --h1 -n "$N_H1" -c 64 -m 1
shape h2-32x10-64k /64k -n "$N_H1" -c 32 -m 10
