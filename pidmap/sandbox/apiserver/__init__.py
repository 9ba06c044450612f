"""The API server room: the sandbox's stand-in kube-apiserver (``python -m pidmap.sandbox.apiserver
--state-dir DIR``; __main__ hands it the kubelet).

Speaks the real wire protocol for what kubectl and the official Python client use on pods, nodes
and namespaces: discovery, a minimal OpenAPI v3 (so ``kubectl apply`` validates server-side),
get/list/watch with label and field selectors, create/delete/patch, server-side ``Table``s,
``pods/exec`` and ``pods/attach`` over WebSocket (``v5.channel.k8s.io`` and ``v4.channel.k8s.io``)
and ``pods/log``.
Errors are real ``Status`` objects (pidmap.sandbox.api.errors).

server (the app: routing, authentication, namespaces, nodes, pods) -> store (objects, resourceVersion,
list and watch) ; exec_stream (pods/exec), attach (pods/attach) and logs (pods/log) stream what the kubelet
(contracts.Kubelet) gives them; discovery and http hold what every handler shares.
"""
