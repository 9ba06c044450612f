#!/usr/bin/env bash
# The course's walkthrough, then pidmap doing it in one command, on the offline sandbox.
#
#   $ scripts/demo.sh
#   docker: engine answers (20.10.24+dfsg1), leaving it alone
#   venv: .venv ready ...
#   Creating cluster "learn-k8s" ...                    (sandbox: minikube-style node names)
#   $ kubectl apply -f examples/kubia-manual.yaml
#   pod/kubia-manual created
#   $ kubectl get pods -o wide
#   NAME           READY   STATUS    RESTARTS   AGE   IP           NODE            ...
#   kubia-manual   1/1     Running   0          2s    10.244.2.2   learn-k8s-m03   ...
#   $ kubectl exec kubia-manual -- ps -aux
#   USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND
#   root           1  0.9  0.1 727648 41844 ?        Ssl  03:37   0:00 node app.js
#   $ docker exec learn-k8s-m03 ps -aux
#   ...    (containerd, the pod's containerd-shim-runc-v2, /pause, node app.js)
#   $ pidmap show kubia-manual
#   (the whole chain: container PID 1 <-> node PID <-> host PID)
#
# Brings the sandbox up (name learn-k8s, or $SANDBOX) unless it is up already, and merges its
# context into your kubeconfig as kind does. Tear down with: .venv/bin/pidmap sandbox down
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
export PATH="$PWD/.venv/bin:$PATH"
name=${SANDBOX:-learn-k8s}

run() { printf '\n$ %s\n' "$*"; "$@"; }

if ! pidmap sandbox status --name "$name" >/dev/null 2>&1; then
  pidmap sandbox up --name "$name" --flavor minikube --config kind-config.yaml
fi
run kubectl apply -f examples/kubia-manual.yaml
kubectl wait --for=jsonpath='{.status.phase}'=Running pod/kubia-manual --timeout=60s >/dev/null
run kubectl get pods -o wide
run kubectl exec kubia-manual -- ps -aux
node=$(kubectl get pod kubia-manual -o jsonpath='{.spec.nodeName}')
run docker exec "$node" ps -aux
run pidmap show kubia-manual
