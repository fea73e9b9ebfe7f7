#!/usr/bin/env bash
# benches/callgrind.sh -- instructions per request on the HTTP/1.1 and HTTP/2 paths, counted by
# valgrind's callgrind: a figure that stays put on a noisy, shared machine (wall-clock load tests
# do not).
#
# Starts an nginx backend (1 KiB `return 200`), the proxy under callgrind with one worker (the
# current-thread runtime) through benches/pinproxy-adapter.sh, and drives it with h2load
# (--h1 for HTTP/1.1) over C keep-alive connections. Each protocol is measured twice, with N1 and
# N2 requests, with the counters zeroed before each batch; (Ir(N2) - Ir(N1)) / (N2 - N1) is the
# cost of one request with start-up and the handshakes taken out. The top functions of the N2
# batch (inclusive and self) are written beside the numbers.
#
#   PINPROXY_BIN  the binary (default target/release/pinproxy; function names need symbols:
#                 build with CARGO_PROFILE_RELEASE_STRIP=false cargo build --release)
#   N1, N2        requests per batch (default 2000, 12000); C connections (default 8), M streams
#                 per h2 connection (default 10)
#   SIZE          response body bytes (default 1024); PROTOS which paths (default "h1 h2")
#   PROXY_THREADS worker threads (default 1: the current-thread runtime)
#   OUT           output directory (default target/callgrind)
#
# Loopback only, free ports, every process stopped by PID; each batch is bounded by h2load's
# request count and `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PINPROXY_BIN:-$ROOT/target/release/pinproxy}
N1=${N1:-2000}
N2=${N2:-12000}
C=${C:-8}
M=${M:-10}
SIZE=${SIZE:-1024}
PROTOS=${PROTOS:-h1 h2}
OUT=${OUT:-$ROOT/target/callgrind}

die() { echo "callgrind.sh: $*" >&2; exit 1; }
for c in openssl nginx h2load valgrind callgrind_control callgrind_annotate python3; do
    command -v "$c" >/dev/null || die "needs $c"
done
[ -x "$BIN" ] || die "no binary at $BIN"
mkdir -p "$OUT"
work=$(mktemp -d)      # what the proxy reads (and watches): config, pins, certificate
scratch=$(mktemp -d)   # everything else, written during the measurement
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work" "$scratch"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- certificate for localhost (ECDSA P-256, self-signed) ------------------------------------
mkdir -p "$work/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/certs/key.pem" -out "$work/certs/cert.pem" 2>/dev/null

# ---- backend: nginx answering 1 KiB ----------------------------------------------------------
backend=$(free_port)
mkdir -p "$scratch/nginx/html"
head -c "$SIZE" /dev/zero | tr '\0' x > "$scratch/nginx/html/body"
chmod 755 "$scratch" "$scratch/nginx" "$scratch/nginx/html"; chmod 644 "$scratch/nginx/html/body"   # nginx workers run as nobody
cat > "$scratch/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $scratch/nginx/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $scratch/nginx; proxy_temp_path $scratch/nginx; fastcgi_temp_path $scratch/nginx;
    uwsgi_temp_path $scratch/nginx; scgi_temp_path $scratch/nginx;
    server { listen 127.0.0.1:$backend; root $scratch/nginx/html; location / { try_files /body =404; } }
}
EOF
nginx -c "$scratch/nginx/nginx.conf" -p "$scratch/nginx" &
pids+=($!)

# ---- the proxy under callgrind ---------------------------------------------------------------
port=$(free_port)
cat > "$scratch/vg" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$scratch/cg.out --dump-instr=no --compress-strings=no \
    --collect-atstart=yes "$BIN" "\$@"
EOF
chmod +x "$scratch/vg"
mkdir -p "$work/proxy"
WORK_DIR=$work/proxy PROXY_THREADS=${PROXY_THREADS:-1} PINPROXY_BIN=$scratch/vg \
    "$ROOT/benches/pinproxy-adapter.sh" start "$port" "$work/certs/cert.pem" "$work/certs/key.pem" "127.0.0.1:$backend" \
    > "$scratch/proxy.log" 2>&1 &
proxy=$!
pids+=("$proxy")
for _ in $(seq 1 600); do
    curl -sk -o /dev/null "https://127.0.0.1:$port/" && break
    sleep 0.1
done
curl -skf -o /dev/null "https://127.0.0.1:$port/" || { cat "$scratch/proxy.log" >&2; die "proxy did not come up"; }

# batch NAME N ARGS...: zero the counters, send N requests, dump; prints the instructions counted.
batch() {
    local name=$1 n=$2; shift 2
    callgrind_control -z "$proxy" >/dev/null 2>&1
    timeout 600 h2load -n "$n" -c "$C" "$@" "https://127.0.0.1:$port/" > "$scratch/$name.h2load" 2>&1 \
        || { cat "$scratch/$name.h2load" >&2; die "h2load failed ($name)"; }
    grep -q " 0 failed, 0 errored" "$scratch/$name.h2load" || { grep requests: "$scratch/$name.h2load" >&2; die "errors in $name"; }
    rm -f "$scratch"/cg.out.*
    callgrind_control -d "$name" "$proxy" >/dev/null 2>&1
    local f
    f=$(ls "$scratch"/cg.out.* | head -1)
    cp "$f" "$OUT/$name.callgrind"
    sed -n 's/^summary: //p;s/^totals: //p' "$f" | head -1
}

# allocs FILE: calls into the allocator (mimalloc's entry points, called from outside mimalloc;
# reallocations included) in a callgrind dump.
allocs() {
    python3 - "$1" <<'PY'
import re, sys
names, fn, cfn, total = {}, None, None, 0
entry = re.compile(r"^mi_(malloc|zalloc|calloc|realloc|rezalloc|recalloc)(_aligned)?$")
def name(v):
    m = re.match(r"\((\d+)\)(?: (.*))?", v)
    if not m:
        return v
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "")
for line in open(sys.argv[1]):
    if line.startswith("fn="):
        fn = name(line[3:].strip())
    elif line.startswith("cfn="):
        cfn = name(line[4:].strip())
    elif line.startswith("calls=") and cfn and entry.match(cfn) and not fn.startswith(("mi_", "_mi_")):
        total += int(line[6:].split()[0])
print(total)
PY
}

report() {
    local proto=$1; shift
    local a b per
    a=$(batch "$proto-n1" "$N1" "$@")
    b=$(batch "$proto-n2" "$N2" "$@")
    per=$(( (b - a) / (N2 - N1) ))
    local al1 al2
    al1=$(allocs "$OUT/$proto-n1.callgrind")
    al2=$(allocs "$OUT/$proto-n2.callgrind")
    echo "$proto: $per instructions/request, $(awk "BEGIN { printf \"%.1f\", ($al2 - $al1) / ($N2 - $N1) }") allocations/request  (Ir $a for $N1, $b for $N2; allocations $al1, $al2)" | tee -a "$OUT/summary.txt"
    callgrind_annotate --inclusive=yes "$OUT/$proto-n2.callgrind" > "$OUT/$proto-inclusive.txt" 2>/dev/null || true
    callgrind_annotate --inclusive=no "$OUT/$proto-n2.callgrind" > "$OUT/$proto-self.txt" 2>/dev/null || true
}

: > "$OUT/summary.txt"
for proto in $PROTOS; do
    case $proto in
        h1) report h1 --h1 -m 1 ;;
        h2) report h2 -m "$M" ;;
        *) die "unknown protocol $proto" ;;
    esac
done
echo "details: $OUT/{h1,h2}-{inclusive,self}.txt"
