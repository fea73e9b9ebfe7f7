#!/usr/bin/env bash
# Checks every deploy/ artefact with its own ecosystem's tool; .ci/run calls it after
# `cargo test` (target/debug/pinproxy exists; set PINPROXY_BIN for another binary).
#   systemd     systemd-analyze verify prints nothing; security --offline=yes exposure <= 2.5
#   docker      hadolint
#   kubernetes  PrometheusRule up to date with deploy/prometheus/alerts.yml; yamllint;
#               kubectl kustomize (where kubectl is present) + kubernetes-validate --strict;
#               never a subPath mount; cert-manager rotationPolicy: Never. The CRD kinds
#               (Certificate, ServiceMonitor, PrometheusRule) have no schema there: the
#               PrometheusRule is checked by promtool, the Certificate by its key line;
#               `pinproxy check` passes the example configs
#   grafana     valid JSON, unique panel ids, every query parsed by promtool
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=${PINPROXY_BIN:-$ROOT/target/debug/pinproxy}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
log() { printf '== deploy/check.sh: %s\n' "$*"; }
die() {
    printf 'deploy/check.sh: %s\n' "$*" >&2
    exit 1
}
for tool in systemd-analyze hadolint yamllint kubernetes-validate promtool python3 openssl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# ---------------------------------------------------------------------------- systemd
log "systemd: verify and security"
unit=deploy/systemd/pinproxy.service
grep -q '^ExecStart=/usr/bin/pinproxy run ' "$unit" || die "$unit: ExecStart must run /usr/bin/pinproxy"
# verify also checks that every command exists: point the copy at the binary CI built (the
# only difference), so the check needs no install into /usr/bin.
[[ -x $BIN ]] || die "$BIN not found: run cargo build first"
sed "s|/usr/bin/pinproxy|$BIN|g" "$unit" >"$WORK/pinproxy.service"
out=$(systemd-analyze verify "$WORK/pinproxy.service" 2>&1) || die "systemd-analyze verify failed: $out"
[[ -z $out ]] || die "systemd-analyze verify printed:"$'\n'"$out"
exposure=$(systemd-analyze security --offline=yes "$unit" 2>&1 |
    sed -n 's/.*Overall exposure level for pinproxy.service: \([0-9.]*\).*/\1/p')
[[ -n $exposure ]] || die "no exposure level from systemd-analyze security"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2.5 else 1)" "$exposure" ||
    die "exposure $exposure > 2.5"
log "systemd: exposure $exposure"

# ---------------------------------------------------------------------------- docker
log "docker: hadolint"
hadolint deploy/docker/Dockerfile

# ---------------------------------------------------------------------------- kubernetes
log "kubernetes: PrometheusRule generated from alerts.yml"
bash deploy/kubernetes/generate-prometheusrule.sh --check
promtool check rules <(python3 -c '
import sys, yaml, json
doc = yaml.safe_load(open(sys.argv[1]))
print(json.dumps(doc["spec"]))' deploy/kubernetes/base/prometheusrule.yaml) >/dev/null
log "kubernetes: yamllint"
yamllint -s -c deploy/kubernetes/.yamllint.yml deploy/kubernetes
if grep -rnE '^[[:space:]-]*subPath[[:space:]]*:' deploy/kubernetes; then
    die "a subPath mount never sees updates: mount ConfigMaps and Secrets as directories"
fi
grep -q 'rotationPolicy: Never' deploy/kubernetes/base/certificate.yaml ||
    die "the cert-manager Certificate must keep the pinned key (rotationPolicy: Never)"
if command -v kubectl >/dev/null 2>&1; then
    for k in deploy/kubernetes/base deploy/kubernetes/overlays/example; do
        log "kubernetes: kubectl kustomize $k | kubernetes-validate --strict"
        kubectl kustomize "$k" >"$WORK/rendered.yaml"
        kubernetes-validate --strict --quiet --no-warn "$WORK/rendered.yaml"
    done
else
    log "kubernetes: no kubectl; validating the base manifests as they are"
    for f in deploy/kubernetes/base/*.yaml; do
        [[ $(basename "$f") == kustomization.yaml ]] && continue
        kubernetes-validate --strict --quiet --no-warn "$f"
    done
fi

# The example configs are real ones: with the mount paths pointed into a scratch directory
# holding a test certificate, a ticket key and the placeholder pins filled in, `pinproxy check`
# must pass them (a renamed or misspelt key fails here).
pin_of() { openssl pkey -in "$1" -pubout -outform der 2>/dev/null | openssl dgst -sha256 -binary | base64; }
for k in base overlays/example; do
    log "kubernetes: pinproxy check on the $k config"
    d=$WORK/example-${k//\//-}
    mkdir -p "$d/pins" "$d/certs" "$d/secrets"
    for f in deploy/kubernetes/$k/files/*.toml; do
        case $(basename "$f") in
        config.toml) sed -e "s|/etc/pinproxy-tls/|certs/|g" -e "s|/etc/pinproxy-tickets/|secrets/|g" "$f" >"$d/config.toml" ;;
        *) cp "$f" "$d/pins/" ;;
        esac
    done
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=api.example.com" \
        -addext "subjectAltName=DNS:api.example.com" -keyout "$d/certs/tls.key" -out "$d/certs/tls.crt" 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/backup.key" 2>/dev/null
    openssl rand 80 >"$d/secrets/tickets"
    sed -i -e "s|REPLACE-with-the-pin-of-the-served-key=====|$(pin_of "$d/certs/tls.key")|" \
        -e "s|REPLACE-with-the-pin-of-the-offline-backup=|$(pin_of "$WORK/backup.key")|" "$d"/pins/*.toml
    "$BIN" check -c "$d/config.toml" >"$WORK/check.txt" 2>&1 || {
        cat "$WORK/check.txt" >&2
        die "pinproxy check refuses the $k example config"
    }
done

# ---------------------------------------------------------------------------- grafana
log "grafana: dashboard"
python3 deploy/grafana/check.py promtool
log "passed"
