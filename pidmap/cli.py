"""Command line: parse, make one call into the core, render, map errors to exit codes."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from pidmap import __version__
from pidmap.errors import ExitStatus, PidmapError


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
