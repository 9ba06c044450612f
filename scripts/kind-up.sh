#!/usr/bin/env bash
# Create the workshop cluster with the real kind (where kind is installed) and apply the examples.
#
#   $ scripts/kind-up.sh
#   Creating cluster "learn-k8s" ...
#   pod/kubia-manual created
#   pod/sidecar created
#   ...
#   now try: pidmap show kubia-manual
#
# Without kind (as on offline machines) it says so and exits 3 without touching anything; use the
# sandbox there: pidmap sandbox up --config kind-config.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kind >/dev/null 2>&1; then
  echo "kind-up: kind is not installed; offline, use: pidmap sandbox up --config kind-config.yaml" >&2
  exit 3
fi
name=$(sed -n 's/^name: *//p' kind-config.yaml)
if kind get clusters 2>/dev/null | grep -qx "$name"; then
  echo "kind-up: cluster $name exists already"
else
  kind create cluster --config kind-config.yaml
fi
kubectl --context "kind-$name" apply -f examples/
echo "now try: pidmap show kubia-manual"
