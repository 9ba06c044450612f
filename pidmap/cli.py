"""Command line: parse, make one call into the core, render, map errors to exit codes.

Start-up is part of every command's time (``pidmap --help`` must answer in well under 0.1 s), so
this module imports only click and the error types at the top; each command imports what its own
path uses (the core, renderers, YAML, the SDKs through ``pidmap.sources``) when it runs, and the
sandbox's commands load only when ``pidmap sandbox ...`` is typed.
"""

from __future__ import annotations

import importlib
import re
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import click

from pidmap import __version__
from pidmap.errors import ExitStatus, NotRunningError, PidmapError, UsageError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from pidmap.model import Options, PodMap, Via
    from pidmap.output import Output

# The same as pidmap.output.OUTPUTS (a unit test holds them equal), spelled out so that parsing the
# command line does not import the renderers and tabulate.
OUTPUTS = ("table", "wide", "json", "yaml", "tree", "dot", "mermaid")

# Subcommands imported only when used: name -> (module, attribute, the one-line help --help shows).
# The one place the core names the sandbox, as a string: pidmap.cli is held by the import-linter
# contract "The core never imports the sandbox" (pyproject.toml), and --help stays click-only.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "sandbox": ("pidmap.sandbox.cli", "sandbox", "An offline kind/minikube-style cluster: Docker nodes "
                "running containerd, stand-in API."),
}


def _error(message: str, hint: str | None) -> None:
    # Messages quote what the cluster, Docker and the user said: escaped like every human output.
    from pidmap.wording import escape

    click.echo(f"error: {escape(message)}", err=True)
    if hint:
        click.echo(f"hint: {escape(hint)}", err=True)


class PidmapGroup(click.Group):
    """Turns every expected error into one line + hint and its exit status (the only handler).

    Also loads ``LAZY_COMMANDS`` on first use; ``--help`` lists them from their one-line help.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if _lazy_available(n))})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            module, attr, _ = LAZY_COMMANDS[cmd_name]
            try:
                command = getattr(importlib.import_module(module), attr)
            except ImportError as err:  # pragma: no cover - the sandbox extra is not installed
                raise UsageError(f"pidmap {cmd_name} needs the '{cmd_name}' extra: {err}",
                                 f"pip install 'pidmap[{cmd_name}]'") from err
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        for name in names:
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, _short_help(LAZY_COMMANDS[name][2], limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except PidmapError as err:
            if debug:
                traceback.print_exc()
            _error(err.message, err.hint)
            ctx.exit(int(err.status))
        except click.UsageError as err:
            # A bad command line reads like every other error: one line, then where to look.
            if debug:
                traceback.print_exc()
            _error(err.format_message(), f"{(err.ctx or ctx).command_path} --help")
            ctx.exit(int(ExitStatus.USAGE))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(int(ExitStatus.INTERRUPTED))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:  # a bug: one line unless --debug
            if debug:
                raise
            _error(f"unexpected {type(err).__name__}: {err}",
                   "rerun with --debug for the traceback, and report it")
            ctx.exit(int(ExitStatus.ERROR))


@click.group(cls=PidmapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pidmap")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """Map the processes of a Kubernetes pod to their PIDs on the node and on the host."""


F = TypeVar("F", bound=Callable[..., Any])


def _short_help(text: str, limit: int) -> str:
    """As click shortens a command's help for the list: whole words, then '...'."""
    if len(text) <= limit:
        return text
    return text[:max(limit - 3, 0)].rsplit(" ", 1)[0] + "..."


def _lazy_available(name: str) -> bool:
    from importlib.util import find_spec

    # The package, not the module: finding pidmap.sandbox.cli would import pidmap.sandbox.
    try:
        return find_spec(LAZY_COMMANDS[name][0].rpartition(".")[0]) is not None
    except ImportError:  # pragma: no cover
        return False


def complete_pods(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from pidmap import complete

    return complete.complete_pods(ctx, param, incomplete)


def complete_nodes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from pidmap import complete

    return complete.complete_nodes(ctx, param, incomplete)


def _pod_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Accept kubectl's TYPE/NAME form too (``pod/kubia-manual``), as a kubectl user types it."""
    if value is not None:
        kind, sep, name = value.partition("/")
        if sep and kind in ("pod", "pods", "po"):
            return name
    return value


OUTPUT_HELP = ("table, wide (adds PID namespace, cgroup id, start time), json, yaml, "
               "or a picture: tree, dot (Graphviz), mermaid.")
WATCH_OUTPUTS = ("table", "wide", "json")


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A timeout as kubectl writes one: ``30`` (seconds), ``30s``, ``500ms``, ``2m``, ``1m30s``."""

    name = "duration"
    _PART = re.compile(r"(\d+(?:\.\d*)?)(ms|s|m|h)")
    _SECONDS: ClassVar[dict[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        seconds: float | None = None
        if re.fullmatch(r"\d+(?:\.\d*)?", text):
            seconds = float(text)
        elif text and re.fullmatch(f"(?:{self._PART.pattern})+", text):
            seconds = sum(float(n) * self._SECONDS[unit] for n, unit in self._PART.findall(text))
        if seconds is None or seconds <= 0:
            self.fail(f"{value!r} is not a duration above zero (such as 30s, 500ms, 2m)", param, ctx)
        return seconds


# Options several commands share, declared once.
request_timeout_option = click.option(
    "--request-timeout", type=Duration(), default=None, metavar="DURATION",
    help="How long to wait for one answer: an API call, a container's probe, the node-side reader "
         "(30s, 500ms, 2m) [default: 10s for an API call, 20s for a probe].")


VIA_HELP = ("How to read the node's processes: this machine's /proc (local), docker exec (docker), or a "
            "short-lived pod on the node (agent: creates, then deletes, one hostPID pod per node; "
            "the only way pidmap writes to a cluster). Also $PIDMAP_VIA.")


def _via_option(choices: tuple[str, ...], help_text: str = VIA_HELP) -> Callable[[F], F]:
    def apply(fn: F) -> F:
        for decorator in reversed((
            click.option("--via", type=click.Choice(choices), default="auto", show_default=True,
                         envvar="PIDMAP_VIA", help=help_text),
            click.option("--agent-image", default=DEFAULT_AGENT_IMAGE, show_default=True,
                         help="With --via agent: the agent pod's image (it needs only sh)."),
            click.option("--agent-namespace", default=DEFAULT_AGENT_NAMESPACE, show_default=True,
                         help="With --via agent: the namespace the agent pod is created in."),
            click.option("--agent-deadline", type=click.IntRange(min=10), default=120, show_default=True,
                         help="With --via agent: seconds the agent pod may live (activeDeadlineSeconds): "
                         "it ends by then even if pidmap is killed."),
        )):
            fn = decorator(fn)
        return fn
    return apply


DEFAULT_AGENT_IMAGE = "busybox"
DEFAULT_AGENT_NAMESPACE = "default"
context_option = click.option("--context", default=None, help="kubeconfig context to use (default: current).")
kubeconfig_option = click.option(
    "--kubeconfig", default=None, type=click.Path(dir_okay=False),
    help="Path of the kubeconfig (default: every file of $KUBECONFIG, then ~/.kube/config).")


def _cluster_options(*, namespace: str | None = "default", namespace_help: str = "Namespace of the pod.",
                     outputs: tuple[str, ...] = OUTPUTS, output_help: str = OUTPUT_HELP) -> Callable[[F], F]:
    """The options every cluster command shares: -n, --context, --kubeconfig, --request-timeout, -o."""
    def apply(fn: F) -> F:
        for decorator in reversed((
            click.option("-n", "--namespace", default=namespace, show_default=namespace is not None,
                         help=namespace_help),
            context_option,
            kubeconfig_option,
            request_timeout_option,
            click.option("-o", "--output", type=click.Choice(outputs), default="table", show_default=True,
                         help=output_help),
        )):
            fn = decorator(fn)
        return fn
    return apply


cluster_options = _cluster_options()


def _check_names(**names: str | None) -> None:
    # Before any kubeconfig is read: a name Kubernetes cannot have is a usage error (2), whatever
    # else is wrong, and never reaches a URL or a log.
    from pidmap.sources.kube import validate_names

    validate_names(**names)


@main.command()
@click.argument("pod", required=False, callback=_pod_name, shell_complete=complete_pods)
@click.option("-c", "--container", default=None, help="Only this container.")
@_via_option(("auto", "local", "docker", "agent"))
@click.option("--all", "all_pods", is_flag=True,
              help="Every pod of the namespace (-n) or of all (-A): one host scan, no exec.")
@click.option("-A", "--all-namespaces", is_flag=True, help="With --all: every namespace.")
@click.option("-w", "--watch", is_flag=True, help="Redraw every --interval seconds (as pidmap watch).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="With --watch: seconds between refreshes.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="With --watch: stop after this many refreshes.")
@cluster_options
def show(pod: str | None, container: str | None, via: str, agent_image: str, agent_namespace: str,
         agent_deadline: int, all_pods: bool, all_namespaces: bool, watch: bool, interval: float,
         count: int | None, namespace: str, context: str | None, kubeconfig: str | None,
         request_timeout: float | None, output: str) -> None:
    """Show every process of POD with its PID in the container, on the node and on the host."""
    _check_names(namespace=agent_namespace)
    options = _options(kubeconfig, context, via, agent_image, agent_namespace, agent_deadline,
                       request_timeout)
    ctx = click.get_current_context()
    given = [f"--{name}" for name in ("interval", "count")
             if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
    if given and not watch:
        raise UsageError(f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with --watch",
                         f"pidmap show {pod or 'POD'} --watch {' '.join(given)} ...")
    if watch and output not in WATCH_OUTPUTS:
        raise UsageError(f"--watch prints table, wide or json, not {output}",
                         "pidmap show POD --watch -o json")
    if all_pods:
        if pod is not None or watch or container:
            raise UsageError("--all takes no POD, -c or --watch", "pidmap show --all [-n NS | -A]")
        _check_names(namespace=None if all_namespaces else namespace)
        from pidmap.collect import collect_all

        _echo_maps(collect_all(None if all_namespaces else namespace, options), output)
        return
    if pod is None:
        raise UsageError("missing POD", "pidmap show POD, or pidmap show --all [-n NS | -A]")
    if all_namespaces:
        raise UsageError("-A goes with --all", "pidmap show --all -A")
    if watch:
        ctx.invoke(
            watch_command, pod=pod, container=container, interval=interval, count=count, via=via,
            agent_image=agent_image, agent_namespace=agent_namespace, agent_deadline=agent_deadline,
            namespace=namespace, context=context, kubeconfig=kubeconfig, request_timeout=request_timeout,
            output=output)
        return
    from pidmap.collect import collect_pod
    from pidmap.model import Target
    from pidmap.output import render

    result = collect_pod(Target(namespace=namespace, pod=pod, container=container), options)
    click.echo(render(result, cast("Output", output)))
    if not result.running:
        raise NotRunningError(f"pod {result.pod.name} is {result.pod.phase}: no process to map",
                              "kubectl describe pod " + result.pod.name + " -n " + result.pod.namespace)


# --- issue 4: whois, node, watch (their cores: pidmap/whois.py, nodemap.py, watch.py) -------------

@main.command()
@click.argument("pid", type=int)
@click.option("--level", type=click.Choice(["host", "node"]), default="host", show_default=True,
              help="Whether PID is a host PID or a PID as seen inside a node container (needs --node).")
@click.option("--node", "node_name", default=None, shell_complete=complete_nodes,
              help="The node container whose view PID is in (with --level node).")
@_via_option(("auto", "agent"), "auto: this machine's /proc and Docker; agent: read NODE through a "
             "short-lived hostPID pod on it (with --level node --node NODE). Also $PIDMAP_VIA.")
@context_option
@kubeconfig_option
@request_timeout_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def whois(pid: int, level: str, node_name: str | None, via: str, agent_image: str, agent_namespace: str,
          agent_deadline: int, context: str | None, kubeconfig: str | None, request_timeout: float | None,
          output: str) -> None:
    """Which node, pod and container own PID (a host PID, or a node PID with --level node)."""
    from pidmap import whois as whois_core
    from pidmap.collect import whois_pid

    _check_names(node_name=node_name, namespace=agent_namespace)
    source = click.get_current_context().get_parameter_source("via")
    if via == "agent" and level == "host" and source == click.core.ParameterSource.ENVIRONMENT:
        via = "auto"  # PIDMAP_VIA=agent set for the cluster commands: a host PID is read here, as ever
    answer = whois_pid(pid, _options(kubeconfig, context, via, agent_image, agent_namespace, agent_deadline,
                                     request_timeout),
                       level=cast(whois_core.Level, level), node_name=node_name)
    click.echo(whois_core.render(answer, output))


def _echo_maps(maps: list[PodMap], output: str) -> None:
    from pidmap.output import render_maps

    click.echo(render_maps(maps, cast("Output", output)))


@main.command("node")
@click.argument("node_name", metavar="NODE", shell_complete=complete_nodes)
@_via_option(("auto", "local", "docker", "agent"))
@_cluster_options(namespace=None, namespace_help="Only the pods of this namespace [default: every one].")
def node_command(node_name: str, via: str, agent_image: str, agent_namespace: str, agent_deadline: int,
                 namespace: str | None, context: str | None, kubeconfig: str | None,
                 request_timeout: float | None, output: str) -> None:
    """Every pod on NODE with all its processes: one host scan, one list call, no exec."""
    from pidmap.collect import collect_node

    _check_names(node_name=node_name, namespace=namespace)
    _check_names(namespace=agent_namespace)
    options = _options(kubeconfig, context, via, agent_image, agent_namespace, agent_deadline,
                       request_timeout)
    maps = collect_node(node_name, options)
    # Filtered after the node-wide list: whether NODE exists is told by all of its pods.
    _echo_maps([m for m in maps if namespace is None or m.pod.namespace == namespace], output)


@main.command("watch")
@click.argument("pod", callback=_pod_name, shell_complete=complete_pods)
@click.option("-c", "--container", default=None, help="Only this container.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after this many refreshes (default: until Ctrl-C).")
@_via_option(("auto", "local", "docker", "agent"))
@_cluster_options(outputs=WATCH_OUTPUTS, output_help="table, wide, or json (one document per line).")
def watch_command(pod: str, container: str | None, interval: float, count: int | None, via: str,
                  agent_image: str, agent_namespace: str, agent_deadline: int, namespace: str,
                  context: str | None, kubeconfig: str | None, request_timeout: float | None,
                  output: str) -> None:
    """Map POD every --interval seconds; mark processes that appeared or vanished and restarts.

    -o json prints one JSON document per line for each refresh that changed something. Ctrl-C ends
    the watch with exit status 0.
    """
    from pidmap import watch as watch_core
    from pidmap.collect import PodCollector, agents_for
    from pidmap.model import Target

    _check_names(pod=pod, namespace=namespace, container=container)
    _check_names(namespace=agent_namespace)
    target = Target(namespace=namespace, pod=pod, container=container)
    options = _options(kubeconfig, context, via, agent_image, agent_namespace, agent_deadline,
                       request_timeout)
    clear = output != "json" and sys.stdout.isatty()
    try:
        # One agent per node for the whole watch (reused by every refresh), deleted when it ends;
        # the collector keeps the clients and the node lookup between refreshes.
        with agents_for(options) as agents, PodCollector(target, options, agents) as collector:
            for frame in watch_core.run(collector.collect, interval=interval, count=count):
                if output == "json":
                    line = watch_core.frame_json(frame)
                    if line is not None:
                        click.echo(line)
                    continue
                text = watch_core.frame_text(frame, pod_label=f"{namespace}/{pod}", interval=interval,
                                             wide=output == "wide")
                # On a terminal the picture is redrawn in place; piped, each refresh follows the last.
                click.echo(("\x1b[H\x1b[2J" if clear else ("" if frame.refresh == 1 else "\n")) + text)
    except KeyboardInterrupt:
        # Stopping is how a watch is meant to end: not an error (documented exit status 0).
        click.echo("", err=True)


def _options(kubeconfig: str | None, context: str | None, via: str, agent_image: str,
             agent_namespace: str, agent_deadline: int, request_timeout: float | None = None) -> Options:
    from pidmap.model import Options

    timeouts = {} if request_timeout is None else {"request_timeout": request_timeout,
                                                    "exec_timeout": request_timeout}
    return Options(kubeconfig=kubeconfig, context=context, via=cast("Via", via), agent_image=agent_image,
                   agent_namespace=agent_namespace, agent_deadline=agent_deadline, **timeouts)


# cobra's ShellCompDirectiveNoFileComp: kubectl's shell script offers these words and no file names.
NO_FILE_COMPLETION = 4


def kubectl_complete(argv: list[str] | None = None) -> None:
    """``kubectl_complete-pidmap ARG... PARTIAL``: what kubectl (1.26+) runs for ``kubectl pidmap <TAB>``.

    It answers in cobra's ``__complete`` format, one ``word<TAB>description`` per line and then
    ``:DIRECTIVE``, from the same click completion as ``pidmap``'s own shell completion, so pod names
    come from the cluster and node names from Docker. Silent on any error, as every completion.
    """
    from click.shell_completion import ShellComplete

    args = list(sys.argv[1:] if argv is None else argv)
    incomplete = args.pop() if args else ""
    try:
        completer = ShellComplete(main, {}, "kubectl pidmap", "_PIDMAP_COMPLETE")
        items = completer.get_completions(args, incomplete)
    except Exception:  # completion must stay silent whatever goes wrong
        items = []
    for item in items:
        help_text = " ".join((item.help or "").split())
        print(f"{item.value}\t{help_text}" if help_text else item.value)
    print(f":{NO_FILE_COMPLETION}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
