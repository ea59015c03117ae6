#!/usr/bin/env python3
"""The PromQL of a Grafana dashboard, for checking it.

Usage: dashboard_queries.py DASHBOARD.json [--rules RULES.yaml]

Prints JSON: {"expressions": [...], "metrics": [...]} -- every PromQL expression of the
dashboard's panels (targets[].expr, nested rows included) and of its template variables
(query_result(...)), and the sorted names of the metrics they and the variables'
label_values(...) queries read. With --rules, writes the expressions as recording rules
(Grafana's $__interval-style variables replaced by durations), so that
`promtool check rules RULES.yaml` parses every one of them.
"""

import argparse
import json
import re
import sys

# Grafana's built-in variables that stand where PromQL expects a duration or a number.
DURATIONS = {
    "$__rate_interval": "5m",
    "${__rate_interval}": "5m",
    "$__interval": "1m",
    "${__interval}": "1m",
    "$__range": "6h",
    "${__range}": "6h",
    "$__range_s": "21600",
    "${__range_s}": "21600",
    "$__interval_ms": "60000",
}

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENTIFIER = re.compile(r"(?<![0-9A-Za-z_:.$])[A-Za-z_:][A-Za-z0-9_:]*")


def expressions(dashboard):
    """PromQL of the panels (recursively) and of query_result() variables."""
    found = []

    def panels(items):
        for panel in items or []:
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if isinstance(expr, str) and expr.strip():
                    found.append(expr)
            panels(panel.get("panels"))

    panels(dashboard.get("panels"))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        query = variable_query(variable)
        if query and query.startswith("query_result(") and query.endswith(")"):
            found.append(query[len("query_result("):-1])
    return found


def variable_query(variable):
    if variable.get("type") != "query":
        return None
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    return query.strip() if isinstance(query, str) else None


def variable_metrics(dashboard):
    """Metrics named by label_values(METRIC_SELECTOR, label) variables."""
    names = set()
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        query = variable_query(variable)
        match = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", query or "", re.S)
        if match:
            names |= metric_names(match.group(1))
    return names


def metric_names(expr):
    """The metric names an expression reads (not functions, keywords or label names)."""
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    previous = None
    while previous != text:
        previous = text
        text = GROUPING.sub(" ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        name = match.group(0)
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or name in KEYWORDS:
            continue
        names.add(name)
    return names


def with_durations(expr):
    for variable in sorted(DURATIONS, key=len, reverse=True):
        expr = expr.replace(variable, DURATIONS[variable])
    return expr


def rules_yaml(name, exprs):
    lines = ["groups:", f"  - name: {json.dumps(name)}", "    rules:"]
    for index, expr in enumerate(exprs):
        lines.append(f"      - record: dashboard_check:expression_{index}")
        lines.append(f"        expr: {json.dumps(with_durations(expr))}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dashboard")
    parser.add_argument("--rules", help="write the expressions as a Prometheus rules file")
    args = parser.parse_args()
    with open(args.dashboard, encoding="utf-8") as file:
        dashboard = json.load(file)
    exprs = expressions(dashboard)
    names = set(variable_metrics(dashboard))
    for expr in exprs:
        names |= metric_names(expr)
    if args.rules:
        with open(args.rules, "w", encoding="utf-8") as file:
            file.write(rules_yaml(dashboard.get("uid") or args.dashboard, exprs))
    json.dump({"expressions": exprs, "metrics": sorted(names)}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
