"""``pidmap sandbox up|down|status``: parse, one call into pidmap.sandbox.cluster.lifecycle, print."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from pidmap.errors import SandboxError
from pidmap.sandbox.cluster import layout, lifecycle

NAME_HELP = f"Sandbox (cluster) name [default: {layout.DEFAULT_NAME}]."
DEFAULT_AS_UP = " As for up, ./kind-config.yaml's name: is used when unset."


def _valid_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    # The name becomes a directory that `down` deletes: refuse anything but a DNS-1123 label.
    try:
        return None if value is None else layout.check_name(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err


# The requests the stand-in API server can refuse as RBAC would.
FORBIDDABLE = ("get:pods", "list:pods", "watch:pods", "create:pods", "delete:pods", "create:pods/exec",
               "create:pods/attach")


def _valid_rules(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for rule in values:
        if rule not in FORBIDDABLE:
            raise click.BadParameter(f"{rule!r} is none of {', '.join(FORBIDDABLE)}")
    return values


@click.group()
def sandbox() -> None:
    """An offline kind/minikube-style cluster: Docker nodes running containerd, stand-in API."""


@sandbox.command()
@click.option("--name", default=None, callback=_valid_name,
              help=NAME_HELP + " A kind config's name: is used when unset.")
@click.option("--flavor", type=click.Choice(["kind", "minikube"]), default="kind", show_default=True,
              help="Name nodes, labels and the context as kind or as minikube does.")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="kind Cluster config [default: ./kind-config.yaml if present, "
              "else 1 control plane + 2 workers].")
@click.option("--kubeconfig", default=None, help="kubeconfig to merge the context into "
              "[default: the first existing file of $KUBECONFIG, else its last, else ~/.kube/config].")
@click.option("--forbid-exec", is_flag=True, help="Answer pods/exec with 403 Forbidden (as RBAC would); "
              "the same as --forbid create:pods/exec.")
@click.option("--forbid", "forbid", multiple=True, callback=_valid_rules, metavar="VERB:RESOURCE",
              help="Answer VERB on RESOURCE with 403 Forbidden in RBAC's words (repeatable): "
              f"{', '.join(FORBIDDABLE)}.")
def up(name: str | None, flavor: str, config: Path | None, kubeconfig: str | None, forbid_exec: bool,
       forbid: tuple[str, ...]) -> None:
    """Create the sandbox cluster and point kubectl at it."""
    spec = lifecycle.up(name, "kind" if flavor == "kind" else "minikube", config, kubeconfig, forbid_exec,
                      click.echo)
    if forbid:
        # Read by the API server on every request: in force before anyone else can use the sandbox's
        # kubeconfig (up has just written it).
        layout.paths(spec.name).save_forbidden(list(forbid))


@sandbox.command()
@click.option("--name", default=None, callback=_valid_name, help=NAME_HELP + DEFAULT_AS_UP)
def down(name: str | None) -> None:
    """Delete the sandbox: API server, pod processes, cgroups, node containers, context, state."""
    name = name or lifecycle.default_name()
    if not lifecycle.down(name, click.echo):
        click.echo(f"Sandbox {name}: nothing to stop")
    else:
        click.echo(f'Deleted sandbox "{name}"')


@sandbox.command()
@click.option("--name", default=None, callback=_valid_name, help=NAME_HELP + DEFAULT_AS_UP)
def status(name: str | None) -> None:
    """Show the sandbox's nodes and pods."""
    name = name or lifecycle.default_name()
    report = lifecycle.status(name)
    spec = report.spec
    api = f"running (pid {report.apiserver_pid})" if report.apiserver_pid else "NOT RUNNING"
    click.echo(f"sandbox {spec.name} ({spec.flavor}), API server {spec.server}: {api}")
    click.echo(f"context {spec.context} in {spec.kubeconfig}\n")
    click.echo(tabulate([(n.name, n.role, n.state, n.container_id) for n in report.nodes],
                        headers=["NODE", "ROLE", "CONTAINER STATE", "CONTAINER ID"], tablefmt="plain"))
    click.echo("")
    if report.pods:
        click.echo(tabulate([(p.namespace, p.name, p.phase, p.node) for p in report.pods],
                            headers=["NAMESPACE", "POD", "PHASE", "NODE"], tablefmt="plain"))
    else:
        click.echo("no pods")
    if not report.apiserver_pid:
        raise SandboxError(f"sandbox {name}: the API server is not running",
                           hint=f"pidmap sandbox down --name {name} && pidmap sandbox up --name {name}")


@sandbox.command()
@click.option("--name", default=None, callback=_valid_name, help=NAME_HELP + DEFAULT_AS_UP)
@click.argument("rules", nargs=-1, callback=_valid_rules, metavar="[VERB:RESOURCE]...")
def forbid(name: str | None, rules: tuple[str, ...]) -> None:
    """Answer these requests with 403 from now on, as RBAC would (replaces the rules; none: clear)."""
    name = name or lifecycle.default_name()
    paths = layout.paths(name)
    if not paths.cluster.exists():
        raise SandboxError(f"sandbox {name} is not up", hint=f"pidmap sandbox up --name {name}")
    paths.save_forbidden(list(rules))
    click.echo(f"sandbox {name}: forbidden: {', '.join(sorted(set(rules))) or 'nothing'}")
