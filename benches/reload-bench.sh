#!/usr/bin/env bash
# benches/reload-bench.sh -- hot reload under load, loopback only, bounded in time.
#
# Starts the release binary in front of a plain keep-alive HTTP/1.1 upstream (python3), drives
# wrk against it for DURATION s, and meanwhile performs RELOADS config swaps (atomic renames of
# config.toml alternating two route sets, as an operator or a config-management tool would). For
# each swap it measures the time from the write to the first request that sees the new route
# (polled over one keep-alive TLS connection every ~2 ms), and checks the generation on /readyz.
#
# Prints: wrk requests, failed requests (socket errors + non-2xx), probe failures, and the
# write-to-served time p50/p99/max. The file watcher's debounce (200 ms) is part of that time.
#
#   PINPROXY_BIN  the binary (default target/release/pinproxy; build with cargo build --release)
#   DURATION      wrk seconds (default 35: 100 reloads take ~25 s)
#   RELOADS       swaps (default 100)
#   CONNS         wrk connections (default 32), THREADS wrk threads (default 2)
#
# Needs openssl, python3, wrk (apt-get install -y wrk). Every process it starts is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PINPROXY_BIN:-$ROOT/target/release/pinproxy}
DURATION=${DURATION:-35}
RELOADS=${RELOADS:-100}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}

die() { echo "reload-bench: $*" >&2; exit 1; }
for c in openssl python3 wrk; do command -v "$c" >/dev/null || die "needs $c"; done
[ -x "$BIN" ] || die "no binary at $BIN (cargo build --release, or set PINPROXY_BIN)"

work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# wait_line FILE PATTERN: the first line of FILE matching PATTERN, waiting up to 20 s.
wait_line() {
    local i
    for ((i = 0; i < 200; i++)); do
        if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "timed out waiting for '$2' in $1"
}

# The config directory is watched: logs and helper files go elsewhere (a log written beside
# config.toml would itself trigger reload attempts).
conf=$work/conf run=$work/run
mkdir -p "$conf/pins" "$conf/certs" "$run"

# ---- PKI: ECDSA P-256 CA and a leaf for 127.0.0.1 / localhost --------------------------------
cd "$conf"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out certs/ca.key 2>/dev/null
openssl req -x509 -new -key certs/ca.key -sha256 -days 2 -subj "/CN=reload-bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -out certs/ca.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out certs/api.key 2>/dev/null
openssl req -new -key certs/api.key -subj "/CN=localhost" -out certs/api.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' > certs/leaf.ext
openssl x509 -req -in certs/api.csr -CA certs/ca.pem -CAkey certs/ca.key -CAcreateserial \
    -days 2 -sha256 -extfile certs/leaf.ext -out certs/api.pem 2>/dev/null
pin=$(openssl x509 -in certs/api.pem -pubkey -noout | openssl pkey -pubin -outform der \
    | openssl dgst -sha256 -binary | base64)
backup=$(head -c32 /dev/urandom | base64)
printf 'description = "reload bench"\nexpires = 2099-01-01\nmode = "enforce"\n[[pin]]\nsha256 = "%s"\nlabel = "served"\n[[pin]]\nsha256 = "%s"\nlabel = "backup"\n' \
    "$pin" "$backup" > pins/bench.toml

cd "$run"

# ---- upstream: HTTP/1.1 keep-alive, answers 200 with the request path as the body -----------
cat > upstream.py <<'PY'
import asyncio
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")   # GET only: no request bodies
            path = head.split(b" ", 2)[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("upstream port", srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
PY
python3 -u upstream.py > upstream.log 2>&1 &
pids+=($!)
uport=$(wait_line upstream.log '^upstream port' | awk '{print $3}')

# ---- two configs: the same "/" route for the load, a probe route whose upstream path differs --
config() { # $1 = a | b
    cat <<TOML
[admin]
listen = "127.0.0.1:0"

[log]
access = false

[[listener]]
name = "bench"
listen = "127.0.0.1:0"
pin_sets = ["bench"]
  [[listener.cert]]
  server_names = ["localhost"]
  chain = "certs/api.pem"
  key = "certs/api.key"

[[route]]
name = "main"
path_prefix = "/"
upstream = "origin"

[[route]]
name = "probe-$1"
path_prefix = "/probe"
upstream = "probe"

[upstream.origin]
url = "http://127.0.0.1:$uport"

[upstream.probe]
url = "http://127.0.0.1:$uport/gen-$1"
TOML
}
config a > config.a.toml
config b > config.b.toml
cp config.a.toml "$conf/config.toml"

"$BIN" run -c "$conf/config.toml" > proxy.log 2>&1 &
pids+=($!)
admin=$(wait_line proxy.log 'admin listening' | sed -E 's/.*addr=([0-9.:]+).*/\1/')
listen=$(wait_line proxy.log 'listening listener=bench' | sed -E 's/.*addr=([0-9.:]+).*/\1/')
echo "proxy: listener $listen, admin $admin, upstream 127.0.0.1:$uport, binary $BIN" >&2

# ---- load ------------------------------------------------------------------------------------
cat > report.lua <<'LUA'
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("WRK requests=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
      summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
LUA
timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s report.lua \
    -H "Host: localhost" "https://$listen/" > wrk.out 2>&1 &
wrk_pid=$!
pids+=($wrk_pid)
sleep 2   # let wrk's connections open first

# ---- reloads ---------------------------------------------------------------------------------
cat > driver.py <<'PY'
import http.client, os, ssl, sys, time
conf, run, listen, admin, reloads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
host, port = listen.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=os.path.join(conf, "certs/ca.pem"))
def connect():
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
probe = connect()
probe_failures = []
def get(path):
    global probe
    try:
        probe.request("GET", path, headers={"Host": "localhost"})
        r = probe.getresponse()
        return r.status, r.read().decode()
    except Exception as e:       # a dropped keep-alive connection is a failure too
        probe_failures.append(repr(e))
        probe = connect()
        return 0, ""
def generation():
    c = http.client.HTTPConnection(admin, timeout=10)
    c.request("GET", "/readyz")
    body = c.getresponse().read().decode().strip()
    return int(body.rsplit("=", 1)[1])
g0 = generation()
times = []
started = time.monotonic()
for i in range(reloads):
    want = "b" if i % 2 == 0 else "a"
    with open(os.path.join(run, f"config.{want}.toml"), "rb") as f:
        data = f.read()
    tmp = os.path.join(conf, ".config.toml.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    t0 = time.monotonic()
    os.rename(tmp, os.path.join(conf, "config.toml"))
    deadline = t0 + 20
    while True:
        status, body = get("/probe")
        if status == 200 and f"/gen-{want}/" in body:
            times.append(time.monotonic() - t0)
            break
        if status not in (0, 200):
            probe_failures.append(f"status {status}")
        if time.monotonic() > deadline:
            sys.exit(f"reload {i + 1}: new route not served within 20 s")
        time.sleep(0.002)
    g = generation()
    if g != g0 + i + 1:
        sys.exit(f"reload {i + 1}: generation {g}, expected {g0 + i + 1}")
elapsed = time.monotonic() - started
times.sort()
pct = lambda p: times[min(len(times) - 1, int(round(p / 100 * (len(times) - 1))))] * 1000
print(f"RELOADS done={len(times)} elapsed_s={elapsed:.1f} generation={g0}->{generation()} "
      f"probe_failures={len(probe_failures)} p50_ms={pct(50):.0f} p99_ms={pct(99):.0f} "
      f"max_ms={times[-1] * 1000:.0f} min_ms={times[0] * 1000:.0f}")
for f in probe_failures[:5]:
    print("probe failure:", f)
PY
reload_out=$(timeout $((DURATION + 120)) python3 -u driver.py "$conf" "$run" "$listen" "$admin" "$RELOADS") \
    || die "reload driver failed: $reload_out"
wrk_running=0
kill -0 "$wrk_pid" 2>/dev/null && wrk_running=1
wait "$wrk_pid" || die "wrk failed: $(cat wrk.out)"

wrk_line=$(grep '^WRK ' wrk.out) || die "no wrk summary: $(cat wrk.out)"
val() { sed -E "s/.*[ ]$1=([0-9.]+).*/\1/" <<<"$2"; }
requests=$(val requests "$wrk_line")
socket_errors=$(( $(val connect "$wrk_line") + $(val read "$wrk_line") + $(val write "$wrk_line") + $(val timeout "$wrk_line") ))
non2xx=$(val status "$wrk_line")
reload_failures=$(curl -s "http://$admin/metrics" | awk '/^pinproxy_config_reloads_total\{.*result="failure"/ {s += $2} END {print s + 0}')

echo
echo "== reload bench: $RELOADS reloads under wrk -t$THREADS -c$CONNS -d${DURATION}s (loopback, $(nproc) cores)"
echo "wrk:     requests=$requests socket_errors=$socket_errors non_2xx=$non2xx latency p50=$(( $(val p50_us "$wrk_line") / 1000 )) ms p99=$(( $(val p99_us "$wrk_line") / 1000 )) ms"
echo "reloads: $reload_out"
echo "         failed reloads (metric): $reload_failures; all reloads inside the load window: $([ "$wrk_running" = 1 ] && echo yes || echo no)"
echo "failed requests: $(( socket_errors + non2xx )) (wrk) + $(grep -oE 'probe_failures=[0-9]+' <<<"$reload_out" | cut -d= -f2) (probe)"
