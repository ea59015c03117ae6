#!/usr/bin/env python3
"""Helm's own engine (PyPI helm-python-sdk, module helm_python) for the chart tests.

Usage:
  helm_chart.py lint CHART VALUES_JSON [--kube-version v1.20.0]
      Prints helm lint's report as JSON ({"messages": [...], "errors": [...]}), strict mode.
  helm_chart.py schema CHART VALUES_JSON
      Prints {"ok": true} or {"ok": false, "error": "..."} (values.schema.json).
  helm_chart.py render CHART VALUES_JSON RELEASE NAMESPACE [--kubeconfig PATH]
      Prints {"documents": [{"source": ..., "yaml": ...}], "notes": "...", "error": null}.
      Offline by default. With --kubeconfig the release's resources are rendered as
      `helm install --dry-run=server` renders them (capabilities read from the cluster, e.g.
      policy/v1beta1 PodDisruptionBudgets on Kubernetes 1.20), and hooks come from the
      offline render (a server dry run leaves them out). A template failure is reported in
      "error" rather than as a crash.

Installs helm-python-sdk with pip when it is missing.
"""

import argparse
import json
import re
import subprocess
import sys

try:
    import helm_python as helm
except ImportError:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "helm-python-sdk"],
        check=True,
        stdout=sys.stderr,
    )
    import helm_python as helm

HOOK = re.compile(r"^\s+helm\.sh/hook:", re.M)


def documents(source, text):
    """The non-empty YAML documents of one rendered template (or of a release manifest)."""
    found = []
    current_source = source
    for part in re.split(r"^---\s*$", text, flags=re.M):
        match = re.search(r"^# Source: (.+)$", part, re.M)
        if match:
            current_source = match.group(1).strip()
        body = "\n".join(line for line in part.splitlines() if not line.startswith("# Source:"))
        if body.strip() and any(l.strip() and not l.lstrip().startswith("#") for l in body.splitlines()):
            found.append({"source": current_source, "yaml": body.strip() + "\n"})
    return found


def offline(chart, values, release, namespace):
    rendered = chart.render(values=values, name=release, namespace=namespace, is_install=True)
    notes = ""
    docs = []
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            notes = rendered[source]
            continue
        docs.extend(documents(source, rendered[source]))
    return docs, notes


def render(args):
    values = json.loads(args.values)
    try:
        with helm.Chart.load(args.chart) as chart:
            docs, notes = offline(chart, values, args.release, args.namespace)
            if args.kubeconfig:
                config = helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)
                release = config.install(chart, args.release, values, namespace=args.namespace, dry_run="server")
                hooks = [d for d in docs if HOOK.search(d["yaml"])]
                docs = documents("manifest", release.get("manifest") or "") + hooks
    except helm.HelmError as error:
        return {"documents": [], "notes": "", "error": f"{type(error).__name__}: {error}"}
    return {"documents": docs, "notes": notes, "error": None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lint = sub.add_parser("lint")
    lint.add_argument("chart")
    lint.add_argument("values")
    lint.add_argument("--kube-version", default="v1.20.0")
    schema = sub.add_parser("schema")
    schema.add_argument("chart")
    schema.add_argument("values")
    rend = sub.add_parser("render")
    rend.add_argument("chart")
    rend.add_argument("values")
    rend.add_argument("release")
    rend.add_argument("namespace")
    rend.add_argument("--kubeconfig")
    args = parser.parse_args()

    if args.command == "lint":
        result = helm.lint(args.chart, json.loads(args.values), strict=True, kube_version=args.kube_version)
    elif args.command == "schema":
        try:
            with helm.Chart.load(args.chart) as chart:
                chart.validate_schema(json.loads(args.values))
            result = {"ok": True}
        except helm.HelmValuesError as error:
            result = {"ok": False, "error": str(error)}
    else:
        result = render(args)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
