"""Command line: parse, make one call into the core, render, map errors to exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from pidmap import __version__
from pidmap.collect import collect_pod
from pidmap.errors import ExitStatus, NotRunningError, PidmapError
from pidmap.model import Options, Target, Via
from pidmap.render import OUTPUTS, Output, render


class PidmapGroup(click.Group):
    """Turns every expected error into one line + hint and its exit status (the only handler)."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except PidmapError as err:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {err.message}", err=True)
            if err.hint:
                click.echo(f"hint: {err.hint}", err=True)
            ctx.exit(int(err.status))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(int(ExitStatus.INTERRUPTED))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:  # a bug: one line unless --debug
            if debug:
                raise
            click.echo(f"error: unexpected {type(err).__name__}: {err}", err=True)
            click.echo("hint: rerun with --debug for the traceback, and report it", err=True)
            ctx.exit(int(ExitStatus.ERROR))


@click.group(cls=PidmapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pidmap")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """Map the processes of a Kubernetes pod to their PIDs on the node and on the host."""


F = TypeVar("F", bound=Callable[..., Any])


def cluster_options(fn: F) -> F:
    """The options every cluster command shares: -n, --context, --kubeconfig, -o."""
    for decorator in reversed((
        click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the pod."),
        click.option("--context", default=None, help="kubeconfig context to use (default: current)."),
        click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False),
                     help="Path of the kubeconfig (default: $KUBECONFIG, then ~/.kube/config)."),
        click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True,
                     help="table, wide (adds PID namespace, cgroup id, start time), json or yaml."),
    )):
        fn = decorator(fn)
    return fn


@main.command()
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Only this container.")
@click.option("--via", type=click.Choice(["auto", "local", "docker"]), default="auto", show_default=True,
              help="Read node processes from this machine's /proc (local) or with docker exec (docker).")
@cluster_options
def show(pod: str, container: str | None, via: str, namespace: str, context: str | None,
         kubeconfig: str | None, output: str) -> None:
    """Show every process of POD with its PID in the container, on the node and on the host."""
    target = Target(namespace=namespace, pod=pod, container=container)
    options = Options(kubeconfig=kubeconfig, context=context, via=cast(Via, via))
    result = collect_pod(target, options)
    click.echo(render(result, cast(Output, output)))
    if not result.running:
        raise NotRunningError(f"pod {result.pod.name} is {result.pod.phase}: no process to map",
                              "kubectl describe pod " + result.pod.name + " -n " + result.pod.namespace)


def _register_sandbox() -> None:
    # The sandbox is optional tooling (its own extra); the core never imports it.
    try:
        from pidmap.sandbox.cli import sandbox
    except ImportError:  # pragma: no cover - sandbox extra not installed
        return
    main.add_command(sandbox)


_register_sandbox()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
