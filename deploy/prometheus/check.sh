#!/usr/bin/env bash
# Validate the Prometheus artefacts in this directory: config, rules, rule unit tests.
# CI runs this script; it exits non-zero on any failure.
#   PROMTOOL=/path/to/promtool bash deploy/prometheus/check.sh   (default: promtool on PATH)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

PROMTOOL="${PROMTOOL:-promtool}"
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
  echo "check.sh: promtool not found; install it (Debian: apt-get install prometheus) or set PROMTOOL" >&2
  exit 1
fi
"$PROMTOOL" --version 2>&1 | head -n 1

"$PROMTOOL" check config prometheus.yml
"$PROMTOOL" check rules alerts.yml
"$PROMTOOL" test rules alerts_test.yml

# promtool passes a test case whose alertname matches no rule, so check coverage here:
# every alert has a case where it fires and one where it stays silent, and no case names
# an alert that does not exist.
rules=$(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*$/\1/p' alerts.yml | sort -u)
coverage=$(awk '
  /^ *alertname:/            { name = $2 }
  /^ *exp_alerts: *\[\] *$/  { silent[name] = 1; next }
  /^ *exp_alerts: *$/        { fires[name] = 1 }
  END { for (n in silent) s[n] = 1; for (n in fires) s[n] = 1
        for (n in s) printf "%s %s %s\n", n, (n in fires) ? "fires" : "-", (n in silent) ? "silent" : "-" }
' alerts_test.yml | sort)
status=0
for r in $rules; do
  if ! grep -qx "$r fires silent" <<<"$coverage"; then
    echo "check.sh: alert $r needs a test case where it fires and one where it stays silent" >&2
    status=1
  fi
done
while read -r name _; do
  [[ -z "$name" ]] && continue
  if ! grep -qx "$name" <<<"$rules"; then
    echo "check.sh: alerts_test.yml tests $name, which is not an alert in alerts.yml" >&2
    status=1
  fi
done <<<"$coverage"
if [[ $status -ne 0 ]]; then
  exit "$status"
fi
echo "coverage: $(wc -l <<<"$rules") alerts, each with a firing and a silent test case"

# Optional style check (pip install yamllint); config in .yamllint.
if command -v yamllint >/dev/null 2>&1; then
  yamllint --strict -c .yamllint alerts.yml alerts_test.yml prometheus.yml
  echo "yamllint: clean"
else
  echo "yamllint not installed; skipping the YAML style check"
fi
