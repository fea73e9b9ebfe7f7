#!/usr/bin/env bash
# Writes base/prometheusrule.yaml (a prometheus-operator PrometheusRule) from
# deploy/prometheus/alerts.yml, the single source of the alert rules.
#   bash deploy/kubernetes/generate-prometheusrule.sh          # regenerate
#   bash deploy/kubernetes/generate-prometheusrule.sh --check  # exit 1 if it is out of date (CI)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
src=../prometheus/alerts.yml
out=base/prometheusrule.yaml

render() {
    cat <<'HEAD'
# GENERATED from deploy/prometheus/alerts.yml by deploy/kubernetes/generate-prometheusrule.sh;
# do not edit: change alerts.yml (and its tests), then run the script.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: pinproxy
spec:
HEAD
    # The rule file's top-level comments are dropped; everything else moves under spec:.
    sed -e '/^#/d' -e 's/^\(.\)/  \1/' "$src"
}

case "${1:-}" in
--check)
    if ! diff -u "$out" <(render); then
        echo "$out is out of date: run bash deploy/kubernetes/generate-prometheusrule.sh" >&2
        exit 1
    fi
    ;;
"")
    render >"$out.tmp"
    mv "$out.tmp" "$out"
    echo "wrote deploy/kubernetes/$out"
    ;;
*)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
