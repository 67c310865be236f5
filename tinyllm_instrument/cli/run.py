"""``tinyllm-instrument run``: run an unmodified program with all four pillars, by pattern."""

from __future__ import annotations

import sys
from typing import Any

import click

from .._runner import (
    ENV_EXPORTER,
    ENV_LOG_FILE,
    ENV_LOG_FORMAT,
    ENV_LOG_LEVEL,
    ENV_METRICS_HOST,
    ENV_METRICS_PORT,
    ENV_OTLP_ENDPOINT,
    ENV_OTLP_PROTOCOL,
    ENV_PRINT_PLAN,
    ENV_SAMPLING_RATE,
    ENV_SERVICE_NAME,
    ENV_TRACING,
    RunError,
    RunOptions,
    run_program,
)
from ..logging import LOG_FORMATS, LOG_LEVELS
from ..patching import ENV_GRAPH, ENV_TARGETS, parse_pattern
from ..telemetry import EXPORTERS, OTLP_PROTOCOLS
from . import cli


class _Pattern(click.ParamType):
    """A target pattern; its environment twin is comma-separated."""

    name = "PATTERN"
    envvar_list_splitter = ","

    def split_envvar_value(self, rv: str) -> list[str]:
        return [item.strip() for item in rv.split(",") if item.strip()]

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            return parse_pattern(value).text
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _OneLineError(click.ClickException):
    """Shown as one line, ``Error: ...``, exit code 2 (as Python's own "can't open file")."""

    exit_code = 2


class _RunCommand(click.Command):
    """Splits the command line where the program starts: SCRIPT or ``-m MODULE``, then its ARGS.

    Everything after SCRIPT, or after ``-m MODULE``, belongs to the program, even what looks like
    one of our options, as with ``python``.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            opt
            for param in self.params
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for opt in param.opts
        }
        head: list[str] = []
        tail: list[str] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                tail = ["--", *args[i + 1 :]]
                break
            if token in ("-m", "--module"):
                head += args[i : i + 2]
                tail = ["--", *args[i + 2 :]]
                break
            if token.startswith("-m") and not token.startswith("--"):  # -mpkg.mod
                head.append(token)
                tail = ["--", *args[i + 1 :]]
                break
            if token.startswith("-") and token != "-":
                head.append(token)
                if "=" not in token and token in takes_value and i + 1 < len(args):
                    head.append(args[i + 1])
                    i += 1
                i += 1
                continue
            tail = ["--", *args[i:]]
            break
        try:
            return super().parse_args(ctx, head + tail)
        except click.UsageError as exc:
            raise _OneLineError(exc.format_message()) from None


@cli.command(
    cls=_RunCommand,
    context_settings={"allow_interspersed_args": False},
    short_help="Run a Python program with all four pillars, wrapping its functions by pattern.",
)
@click.option(
    "--instrument",
    "patterns",
    type=_Pattern(),
    multiple=True,
    envvar=ENV_TARGETS,
    help="Wrap what PATTERN selects (repeatable): module:function, module:Class.method, "
    "module:*, module:Class.*, package.*:*. The program's own module is its file stem as "
    "written (app for app.py, my-agent for my-agent.py) or its -m name. "
    "Env: TINYLLM_INSTRUMENT_TARGETS, comma-separated.",
)
@click.option(
    "--tracing/--no-tracing",
    default=None,
    envvar=ENV_TRACING,
    help="Record and export spans. Default: on when --exporter or --otlp-endpoint is given.",
)
@click.option(
    "--exporter",
    type=click.Choice(EXPORTERS),
    envvar=ENV_EXPORTER,
    help="Where spans go: tree (the default: each trace printed on stdout as a tree when its "
    "root span ends), console (one JSON document per span on stdout), otlp (the default with "
    "--otlp-endpoint) or none.",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    envvar=ENV_OTLP_ENDPOINT,
    help="Collector base URL; implies --tracing --exporter otlp.",
)
@click.option(
    "--otlp-protocol",
    type=click.Choice(OTLP_PROTOCOLS),
    default="grpc",
    show_default=True,
    envvar=ENV_OTLP_PROTOCOL,
)
@click.option(
    "--sampling-rate",
    type=click.FloatRange(0.0, 1.0),
    default=1.0,
    show_default=True,
    envvar=ENV_SAMPLING_RATE,
    help="Fraction of traces kept.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    envvar=ENV_METRICS_PORT,
    help="Serve /metrics on this port for the life of the program (0: any free port).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    envvar=ENV_METRICS_HOST,
    help="Address of /metrics; pass 0.0.0.0 to expose it on purpose.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    envvar=ENV_LOG_FORMAT,
    help="Configure logging (root logger and structlog). Unset, with --log-level and --log-file "
    "unset too: the program's own logging setup is left alone.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    envvar=ENV_LOG_LEVEL,
)
@click.option("--log-file", metavar="FILE", envvar=ENV_LOG_FILE, help="Log lines go to FILE.")
@click.option(
    "--service-name",
    envvar=ENV_SERVICE_NAME,
    help="service.name of the spans (default: the script's stem or the module name).",
)
@click.option(
    "--graph",
    metavar="NAME",
    envvar=ENV_GRAPH,
    help="Qualname (or module:qualname) of the wrapped callable that is the graph. Default: the "
    "first wrapped callable on the stack is.",
)
@click.option(
    "--print-plan",
    is_flag=True,
    default=False,
    envvar=ENV_PRINT_PLAN,
    help="After the run, print on stderr what each pattern matched.",
)
@click.option("-m", "module", metavar="MODULE", help="Run a module, as python -m does.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="(SCRIPT | -m MODULE) [ARGS]...")
def run(
    patterns: tuple[str, ...],
    tracing: bool | None,
    exporter: str | None,
    otlp_endpoint: str | None,
    otlp_protocol: str,
    sampling_rate: float,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str | None,
    log_level: str | None,
    log_file: str | None,
    service_name: str | None,
    graph: str | None,
    print_plan: bool,
    module: str | None,
    args: tuple[str, ...],
) -> None:
    """Run SCRIPT (or -m MODULE) with ARGS in this process, as __main__, under the kit.

    \b
    Example:
      tinyllm-instrument run --instrument 'app:*' --tracing \\
          --otlp-endpoint http://localhost:4317 --metrics-port 9090 --log-format json app.py
    """
    if module is None and not args:
        raise _OneLineError("give the program to run: SCRIPT [ARGS]... or -m MODULE [ARGS]...")
    script = None if module is not None else args[0]
    program_args = args if module is not None else args[1:]
    options = RunOptions(
        targets=patterns,
        tracing=tracing,
        exporter=exporter,
        otlp_endpoint=otlp_endpoint,
        otlp_protocol=otlp_protocol,
        sampling_rate=sampling_rate,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format.lower() if log_format else None,
        log_level=log_level.upper() if log_level else None,
        log_file=log_file,
        service_name=service_name,
        graph=graph,
        print_plan=print_plan,
    )
    try:
        code = run_program(options, script=script, module=module, args=program_args)
    except RunError as exc:
        raise _OneLineError(str(exc)) from None
    sys.exit(code)
