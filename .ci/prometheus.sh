#!/usr/bin/env bash
# Prometheus checks beyond the rule unit tests; .ci/run calls this after `cargo test`, so
# target/debug/pinproxy exists (set PINPROXY_BIN to use another binary).
#
#  1. Installs Debian's `prometheus` package when promtool or prometheus is missing, without
#     leaving the package's own service running.
#  2. deploy/prometheus/check.sh: config, rules, rule unit tests, test coverage.
#  3. Starts pinproxy on a generated config (a listener serving a leaf 5 days from expiry, an
#     HTTPS upstream that is the proxy's own listener, a dead upstream), sends a few requests
#     and runs `promtool check metrics` on /metrics: any problem fails.
#  4. End to end: a real Prometheus scrapes that pinproxy every second with the shipped
#     alerts.yml (every `for:` cut to 5s) and must report PinproxyServedCertificateExpiringCritical and
#     PinproxyUpstreamCertificateExpiring firing within ALERT_WAIT seconds, and,
#     while requests go to an upstream that fails every handshake (TLS to a plain-HTTP port),
#     PinproxyUpstreamFailing{kind="tls"} and PinproxyRoute5xxCritical for its route.
#
# Loopback only; free ports are picked with a retry; every process this script starts is
# stopped by its PID on exit; every loop is bounded.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=${PINPROXY_BIN:-$ROOT/target/debug/pinproxy}
ALERT_WAIT=${ALERT_WAIT:-60}
WORK=$(mktemp -d)
PIDS=()
POLICY_RC_D_CREATED=

log() { printf '== prometheus.sh: %s\n' "$*"; }
die() {
    printf 'prometheus.sh: %s\n' "$*" >&2
    exit 1
}

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid f
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ -n $POLICY_RC_D_CREATED ]]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    if [[ $rc -ne 0 ]]; then
        for f in "$WORK"/*.log; do
            [[ -s $f ]] || continue
            echo "---- last lines of $(basename "$f")" >&2
            tail -n 30 "$f" >&2
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------- 1. install
stop_package_service() {
    local pidfile=/run/prometheus/prometheus.pid pid
    if [[ -d /run/systemd/system ]] && systemctl is-active --quiet prometheus 2>/dev/null; then
        log "the package started prometheus.service; stopping it"
        systemctl stop prometheus
    fi
    if [[ -s $pidfile ]]; then
        pid=$(<"$pidfile")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
            [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == /usr/bin/prometheus ]]; then
            log "the package started prometheus (PID $pid from $pidfile); stopping it"
            kill -TERM "$pid"
        fi
    fi
}

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || die "promtool/prometheus missing and not root: apt-get install prometheus"
    log "installing Debian's prometheus package"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Tells invoke-rc.d and deb-systemd-invoke not to start the package's service.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_RC_D_CREATED=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    stop_package_service
fi
for tool in promtool prometheus curl openssl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
[[ -x $BIN ]] || die "$BIN not found: run cargo build first"

# ---------------------------------------------------------------------------- 2. rules
log "deploy/prometheus/check.sh"
bash deploy/prometheus/check.sh

# ---------------------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID TRIES: 0 once URL answers 2xx, 1 if PID died or TRIES × 0.1 s passed.
wait_http() {
    local url=$1 pid=$2 tries=$3 i
    for i in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 1
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

pin_of_pubkey_der() { openssl dgst -sha256 -binary | base64; }

# ---------------------------------------------------------------------------- certificates
CERTS=$WORK/certs
mkdir -p "$CERTS" "$WORK/pins"
ossl() { openssl "$@" 2>>"$WORK/openssl.log"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=pinproxy e2e test root" -keyout "$CERTS/ca.key" -out "$CERTS/ca.pem"
ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout "$CERTS/leaf.key" -out "$CERTS/leaf.csr"
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$CERTS/leaf.ext"
# 5 days left: inside the default critical_before (14d).
ossl x509 -req -in "$CERTS/leaf.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" -CAcreateserial \
    -days 5 -extfile "$CERTS/leaf.ext" -out "$CERTS/leaf.pem"
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CERTS/backup.key"
LEAF_PIN=$(ossl x509 -in "$CERTS/leaf.pem" -pubkey -noout | ossl pkey -pubin -outform der | pin_of_pubkey_der)
CA_PIN=$(ossl x509 -in "$CERTS/ca.pem" -pubkey -noout | ossl pkey -pubin -outform der | pin_of_pubkey_der)
BACKUP_PIN=$(ossl pkey -in "$CERTS/backup.key" -pubout -outform der | pin_of_pubkey_der)
cat >"$WORK/pins/app.toml" <<EOF
description = "e2e: the listener's pin set"
expires = 2099-01-01
mode = "enforce"
[[pin]]
sha256 = "$LEAF_PIN"
label = "current key"
kind = "key"
[[pin]]
sha256 = "$BACKUP_PIN"
label = "backup key"
kind = "key"
EOF
cat >"$WORK/pins/self-ca.toml" <<EOF
description = "e2e: the loop-back upstream's CA"
expires = 2099-01-01
mode = "enforce"
[[pin]]
sha256 = "$CA_PIN"
label = "test root"
kind = "ca"
EOF

# ---------------------------------------------------------------------------- 3. pinproxy
write_config() {
    local listen=$1 admin=$2
    cat >"$WORK/config.toml" <<EOF
[admin]
listen = "127.0.0.1:$admin"

[log]
access = false

[[listener]]
name = "mobile"
listen = "127.0.0.1:$listen"
pin_sets = ["app"]
  [[listener.cert]]
  server_names = ["localhost"]
  chain = "certs/leaf.pem"
  key = "certs/leaf.key"

# /loop/x goes through the proxy's own listener as an HTTPS upstream: its verified path shows
# up with scope="upstream".
[[route]]
name = "loop"
path_prefix = "/loop/"
upstream = "self"
strip_prefix = true

[[route]]
name = "dead"
path_prefix = "/dead/"
upstream = "dead"

[[route]]
name = "bad"
path_prefix = "/bad/"
upstream = "bad"
strip_prefix = true

[[route]]
name = "admin"
path_prefix = "/"
upstream = "admin"

[upstream.self]
url = "https://127.0.0.1:$listen"
ca = "certs/ca.pem"
server_name = "localhost"
pin_set = "self-ca"

[upstream.dead]
url = "http://127.0.0.1:9"

# TLS to the plain-HTTP admin port: every handshake fails, and nothing else is disturbed.
[upstream.bad]
url = "https://127.0.0.1:$admin"
ca = "certs/ca.pem"
server_name = "localhost"

[upstream.admin]
url = "http://127.0.0.1:$admin"
EOF
}

PROXY_PID= LISTEN= ADMIN=
for attempt in 1 2 3 4 5; do
    LISTEN=$(free_port)
    ADMIN=$(free_port)
    [[ $LISTEN != "$ADMIN" ]] || continue
    write_config "$LISTEN" "$ADMIN"
    "$BIN" run -c "$WORK/config.toml" >"$WORK/pinproxy.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if wait_http "http://127.0.0.1:$ADMIN/readyz" "$PROXY_PID" 100; then
        break
    fi
    stop_pid "$PROXY_PID"
    PROXY_PID=
    log "pinproxy did not come up on ports $LISTEN/$ADMIN (attempt $attempt); retrying"
done
[[ -n $PROXY_PID ]] || die "pinproxy did not start"
log "pinproxy (PID $PROXY_PID) listening on 127.0.0.1:$LISTEN, admin 127.0.0.1:$ADMIN"

request() {
    curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$CERTS/ca.pem" \
        --resolve "localhost:$LISTEN:127.0.0.1" "https://localhost:$LISTEN$1" || echo "failed"
}
codes="/healthz=$(request /healthz) /loop/healthz=$(request /loop/healthz) /dead/x=$(request /dead/x) /bad/x=$(request /bad/x)"
log "requests: $codes"
[[ $codes == "/healthz=200 /loop/healthz=200 /dead/x=502 /bad/x=502" ]] || die "unexpected statuses: $codes"

# The sweep follows the upstream's first handshake within milliseconds; allow 5 s.
for i in $(seq 50); do
    curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN/metrics" >"$WORK/metrics.txt"
    grep -q '^pinproxy_certificate_not_after_timestamp_seconds{.*scope="upstream"' "$WORK/metrics.txt" && break
    sleep 0.1
done
grep -q '^pinproxy_certificate_not_after_timestamp_seconds{.*position="leaf".*scope="listener"' "$WORK/metrics.txt" ||
    die "no served leaf in /metrics"
grep -q '^pinproxy_certificate_not_after_timestamp_seconds{.*scope="upstream"' "$WORK/metrics.txt" ||
    die "no upstream certificate in /metrics"
log "promtool check metrics ($(grep -vc '^#' "$WORK/metrics.txt") samples)"
if ! lint=$(promtool check metrics <"$WORK/metrics.txt" 2>&1); then
    printf '%s\n' "$lint" >&2
    die "promtool check metrics found problems"
fi
[[ -z $lint ]] || printf '%s\n' "$lint"

# ---------------------------------------------------------------------------- 4. end to end
# The shipped rules with every `for:` cut to 5s, so the traffic alerts (for: 2m, 5m) reach
# "firing" within this run; expressions, labels and annotations are the shipped ones.
sed -E 's/^( *)for: .*/\1for: 5s/' "$ROOT/deploy/prometheus/alerts.yml" >"$WORK/alerts.yml"
write_prometheus_config() {
    cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $WORK/alerts.yml
scrape_configs:
  - job_name: pinproxy
    static_configs:
      - targets: ["127.0.0.1:$ADMIN"]
EOF
}
write_prometheus_config
promtool check config "$WORK/prometheus.yml" >/dev/null

PROM_PID= PROM=
for attempt in 1 2 3 4 5; do
    PROM=127.0.0.1:$(free_port)
    rm -rf "$WORK/tsdb"
    prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
        --web.listen-address="$PROM" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
    PROM_PID=$!
    PIDS+=("$PROM_PID")
    if wait_http "http://$PROM/-/ready" "$PROM_PID" 300; then
        break
    fi
    stop_pid "$PROM_PID"
    PROM_PID=
    log "prometheus did not come up on $PROM (attempt $attempt); retrying"
done
[[ -n $PROM_PID ]] || die "prometheus did not start"
log "prometheus (PID $PROM_PID) on $PROM, rules from deploy/prometheus/alerts.yml (for: 5s)"

ready_at=$(date +%s.%N)
want="PinproxyServedCertificateExpiringCritical PinproxyUpstreamCertificateExpiring PinproxyUpstreamFailing PinproxyRoute5xxCritical"
found=
deadline=$(($(date +%s) + ALERT_WAIT))
while (($(date +%s) < deadline)); do
    # The failing upstream keeps failing: one request per poll (bounded by ALERT_WAIT).
    [[ $(request /bad/x) == 502 ]] || die "/bad/x did not answer 502"
    if curl -fsS --max-time 2 "http://$PROM/api/v1/alerts" >"$WORK/alerts.json" 2>/dev/null; then
        # Prints "ALERTNAME STATE" for each wanted alert that is pending or firing with the
        # labels that must hold, and "UNEXPECTED ALERTNAME" for any other alert but PinproxyDown
        # (scraping may start late): the warning alert must not overlap the critical one, and
        # nothing else is wrong with this proxy.
        found=$(python3 - "$WORK/alerts.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
wanted = ("PinproxyServedCertificateExpiringCritical", "PinproxyUpstreamCertificateExpiring",
          "PinproxyUpstreamFailing", "PinproxyRoute5xxCritical")
# The dead upstream's single 502 may also raise the traffic alerts for it; nothing else may.
tolerated = ("PinproxyDown", "PinproxyUpstreamErrors", "PinproxyRoute5xx")
for a in doc["data"]["alerts"]:
    l = a["labels"]
    if a["state"] not in ("pending", "firing"):
        continue
    if l.get("alertname") not in wanted + tolerated:
        print("UNEXPECTED", l.get("alertname"), l)
    if l.get("alertname") in ("PinproxyUpstreamFailing", "PinproxyUpstreamErrors") and \
            (l.get("upstream"), l.get("kind")) not in (("bad", "tls"), ("dead", "connect")):
        print("UNEXPECTED", l.get("alertname"), l)
    if l.get("alertname") == "PinproxyUpstreamFailing" and \
            (l.get("upstream"), l.get("kind")) == ("bad", "tls"):
        print(l["alertname"], a["state"])
    if l.get("alertname") == "PinproxyRoute5xxCritical" and l.get("route") == "bad":
        print(l["alertname"], a["state"])
    if l.get("alertname") == "PinproxyServedCertificateExpiringCritical" and \
            (l.get("scope"), l.get("name"), l.get("position")) == ("listener", "mobile", "leaf"):
        print(l["alertname"], a["state"])
    if l.get("alertname") == "PinproxyUpstreamCertificateExpiring" and \
            (l.get("scope"), l.get("name"), l.get("position")) == ("upstream", "self", "leaf"):
        print(l["alertname"], a["state"])
EOF
        )
        if grep -q '^UNEXPECTED' <<<"$found"; then
            printf '%s\n' "$found" >&2
            die "an alert fired that must stay silent"
        fi
        ok=1
        for w in $want; do
            grep -q "^$w firing" <<<"$found" || ok=
        done
        [[ -z $ok ]] || break
    fi
    sleep 0.5
done
took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$ready_at" "$(date +%s.%N)")
for w in $want; do
    if ! grep -q "^$w firing" <<<"$found"; then
        curl -fsS --max-time 2 "http://$PROM/api/v1/query?query=up" >&2 || true
        echo >&2
        cat "$WORK/alerts.json" >&2 2>/dev/null || true
        die "$w not firing within ${ALERT_WAIT}s"
    fi
done
log "alerts within ${took}s of Prometheus being ready: $(tr '\n' ' ' <<<"$found")"
log "passed"
