#!/usr/bin/env python3
"""Checks deploy/grafana/pinproxy.json: valid JSON, unique panel ids, a query on every panel,
every PromQL expression (panels and template variables) parsed by `promtool check rules`, and
every pinproxy_* metric it names defined in src/metrics.rs.

    python3 deploy/grafana/check.py [PROMTOOL]
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/pinproxy.json"
METRICS_RS = ROOT / "src/metrics.rs"
# Grafana's variables, replaced by values of the same type so that PromQL parses.
VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${job}": ".+",
    "$job": ".+",
    "${instance}": ".+",
    "$instance": ".+",
}


def fail(msg):
    print(f"check.py: {msg}", file=sys.stderr)
    sys.exit(1)


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def substitute(expr):
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    if "$" in expr.replace("$labels", "").replace("$value", ""):
        fail(f"unknown Grafana variable in: {expr}")
    return expr


def main():
    promtool = sys.argv[1] if len(sys.argv) > 1 else "promtool"
    try:
        dash = json.loads(DASHBOARD.read_text())
    except ValueError as e:
        fail(f"{DASHBOARD}: not valid JSON: {e}")
    exprs = []
    seen = {}
    for p in panels(dash.get("panels", [])):
        pid = p.get("id")
        if not isinstance(pid, int):
            fail(f"panel {p.get('title')!r} has no integer id")
        if pid in seen:
            fail(f"panel id {pid} is used by {seen[pid]!r} and {p.get('title')!r}")
        seen[pid] = p.get("title")
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        if not targets:
            fail(f"panel {pid} {p.get('title')!r} has no query")
        for t in targets:
            if not t.get("expr"):
                fail(f"panel {pid} target {t.get('refId')} has no expr")
            exprs.append((f"panel{pid}_{t.get('refId')}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
        if v.get("type") == "query":
            if not m:
                fail(f"variable {v.get('name')}: expected label_values(EXPR, LABEL), got {q!r}")
            exprs.append((f"variable_{v['name']}", m.group(1)))

    known = set(re.findall(r'"(pinproxy_[a-z0-9_]+)"', METRICS_RS.read_text()))
    for name, expr in exprs:
        for metric in re.findall(r"\bpinproxy_[a-z0-9_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if metric not in known and base not in known:
                fail(f"{name}: {metric} is not a metric defined in src/metrics.rs")

    rules = {
        "groups": [
            {
                "name": "grafana_dashboard_queries",
                "rules": [
                    {"record": f"grafana:{name}", "expr": substitute(expr)}
                    for name, expr in exprs
                ],
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        pathlib.Path(path).unlink()
    if r.returncode != 0:
        print(r.stdout + r.stderr, file=sys.stderr)
        fail("promtool rejected a dashboard query")
    print(f"deploy/grafana/pinproxy.json: {len(seen)} panels, {len(exprs)} queries parse")


main()
