#!/usr/bin/env bash
# Checks the shipped Prometheus files with promtool: the config and rules parse, and
# every alert fires for the condition it describes and stays quiet for near-misses
# (deploy/prometheus/alerts_test.yml). The tests compare labels only, so the rules are
# tested as alerts.yml has them with their annotations (templates) left out.
#
#     bash scripts/check_alerts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v promtool >/dev/null || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
python3 -c "import yaml" 2>/dev/null || python3 -m pip install -q pyyaml
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/alerts_exprs_only.yml" <<'PY'
import sys, yaml
d = yaml.safe_load(open("deploy/prometheus/alerts.yml"))
for g in d["groups"]:
    for r in g["rules"]:
        r.pop("annotations", None)
yaml.safe_dump(d, open(sys.argv[1], "w"), sort_keys=False)
PY
cp deploy/prometheus/alerts_test.yml "$work/"
(cd "$work" && promtool test rules alerts_test.yml)
