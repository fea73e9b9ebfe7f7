#!/usr/bin/env bash
# benches/pinproxy-adapter.sh -- the harness adapter for pinproxy, from ../shared/bench/adapters/pinproxy.sh
# with two changes for a fair comparison (nginx and HAProxy log nothing in the harness):
# `[log] access = false`, and PROXY_THREADS passed on as PINPROXY_WORKERS.
#   PINPROXY_BIN   the binary (default: pinproxy on PATH)
set -euo pipefail
spki() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64; }
backup() { head -c32 /dev/urandom | base64; }
case ${1:-} in
start)
    [ $# -eq 5 ] || { echo "usage: $0 start PORT CERT KEY UPSTREAM" >&2; exit 2; }
    port=$2 cert=$3 key=$4 upstream=$5
    bin=${PINPROXY_BIN:-pinproxy}
    command -v "$bin" >/dev/null 2>&1 || [ -x "$bin" ] || { echo "pinproxy adapter: '$bin' not found (set PINPROXY_BIN)" >&2; exit 1; }
    w=${WORK_DIR:?}; mkdir -p "$w/pins"
    admin=$((port + 1000))
    printf 'description = "bench listener"\nexpires = 2099-01-01\nmode = "enforce"\n[[pin]]\nsha256 = "%s"\nlabel = "served"\n[[pin]]\nsha256 = "%s"\nlabel = "backup"\n' \
        "$(spki "$cert")" "$(backup)" > "$w/pins/bench.toml"
    if [ "${UPSTREAM_TLS:-0}" = 1 ]; then
        printf 'description = "bench upstream"\nexpires = 2099-01-01\nmode = "enforce"\n[[pin]]\nsha256 = "%s"\nlabel = "upstream leaf"\n[[pin]]\nsha256 = "%s"\nlabel = "spare"\n' \
            "${UPSTREAM_SPKI_SHA256:?}" "$(backup)" > "$w/pins/origin.toml"
        up=$(printf 'url = "https://%s:%s"\nca = "%s"\npin_set = "origin"\npin_match = "leaf"\n' "${UPSTREAM_SNI:-localhost}" "${upstream##*:}" "${UPSTREAM_CA:?}")
    else
        up=$(printf 'url = "http://%s"\n' "$upstream")
    fi
    cat > "$w/config.toml" <<TOML
[log]
access = false

[admin]
listen = "127.0.0.1:$admin"

[[listener]]
name = "bench"
listen = "127.0.0.1:$port"
pin_sets = ["bench"]
  [[listener.cert]]
  server_names = ["localhost"]
  chain = "$cert"
  key = "$key"

[[route]]
path_prefix = "/"
upstream = "origin"

[upstream.origin]
$up
TOML
    PINPROXY_WORKERS=${PROXY_THREADS:-} exec "$bin" run -c "$w/config.toml"
    ;;
stop)
    kill -TERM "$2"
    ;;
*)
    echo "usage: $0 start PORT CERT KEY UPSTREAM | stop PID" >&2; exit 2 ;;
esac
