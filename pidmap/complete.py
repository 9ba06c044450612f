"""Shell completion (click's): pod and node names read from the cluster, silent on any error.

A completion runs on every <TAB>: it must never print a traceback or an error into the shell, so
every failure (no kubeconfig, server down, no Docker) simply completes nothing.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

from pidmap.model import Options


def _options(ctx: click.Context) -> Options:
    # Options typed before the word being completed are already parsed into ctx.params.
    return Options(kubeconfig=ctx.params.get("kubeconfig"), context=ctx.params.get("context"),
                   request_timeout=3.0)


def complete_pods(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Pods of the namespace given with -n (default: default) whose name starts with ``incomplete``."""
    try:
        from pidmap.sources import kube

        namespace = ctx.params.get("namespace") or "default"
        pods = kube.list_pods(kube.Cluster(_options(ctx)), namespace=namespace)
        return [CompletionItem(pod.name, help=pod.phase) for pod in pods if pod.name.startswith(incomplete)]
    except Exception:  # completion must stay silent whatever goes wrong
        return []


def complete_nodes(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Node containers (kind, minikube, k3d) of the Docker engine whose name starts with ``incomplete``."""
    try:
        from pidmap.sources import nodes

        found = nodes.list_nodes(nodes.docker_client())
        return [CompletionItem(node.name, help=node.provider) for node in sorted(found, key=lambda n: n.name)
                if node.name.startswith(incomplete)]
    except Exception:  # completion must stay silent whatever goes wrong
        return []

