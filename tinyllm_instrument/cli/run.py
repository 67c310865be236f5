"""``tinyllm-instrument run``: run an unmodified program with all four pillars, by pattern."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import click
from click.core import ParameterSource

from .._patterns import PATTERN_FORMS, parse_model, parse_pattern
from .._runner import (
    ENV_DEFAULT_TARGETS,
    ENV_EXPORTER,
    ENV_LOG_FILE,
    ENV_LOG_FORMAT,
    ENV_LOG_LEVEL,
    ENV_METRICS_HOST,
    ENV_METRICS_PORT,
    ENV_OTEL_INSTRUMENTATIONS,
    ENV_OTLP_ENDPOINT,
    ENV_OTLP_PROTOCOL,
    ENV_PRINT_PLAN,
    ENV_SAMPLING_RATE,
    ENV_SERVICE_NAME,
    ENV_TRACING,
    RunError,
    RunOptions,
    run_program,
    typed_as,
)
from ..logging import LOG_FORMATS, LOG_LEVELS
from ..patching import ENV_GRAPH, ENV_MODELS, ENV_TARGETS
from ..presets import is_preset, parse_preset
from ..telemetry import EXPORTERS, OTLP_PROTOCOLS, TelemetryConfig
from . import cli
from ._options import OneLineUsageError

# --------------------------------------------------------------------------------------------
# Values: each type says what is wrong in words that fit after "--flag VALUE: " or "VAR=VALUE: "
# --------------------------------------------------------------------------------------------


class _BadValue(click.BadParameter):
    """A value the user gave that cannot work: ``problem`` says why, ``item`` is the value (one
    item of a comma-separated variable); the command names the flag or variable it came from."""

    def __init__(
        self, problem: str, item: str, ctx: click.Context | None, param: click.Parameter | None
    ) -> None:
        super().__init__(problem, ctx, param)
        self.problem = problem
        self.item = item


class _Checked(click.ParamType):
    """A value checked by :meth:`check`: returns it converted, or raises ValueError(problem)."""

    def check(self, value: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value  # a default, or converted already
        try:
            return self.check(value)
        except ValueError as exc:
            raise _BadValue(str(exc), value, ctx, param) from None


class _OneOf(_Checked):
    def __init__(self, choices: tuple[str, ...], *, upper: bool = False) -> None:
        self.choices = choices
        self.upper = upper
        self.name = "|".join(choices)

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "[" + "|".join(self.choices) + "]"

    def check(self, value: str) -> str:
        normal = value.strip().upper() if self.upper else value.strip().lower()
        if normal not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return normal


class _Rate(_Checked):
    name = "RATE"

    def check(self, value: str) -> float:
        try:
            rate = float(value)
        except ValueError:
            raise ValueError("must be a number between 0 and 1") from None
        if not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError("must be between 0 and 1")
        return rate


class _Port(_Checked):
    name = "PORT"

    def check(self, value: str) -> int:
        try:
            port = int(value)
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            raise ValueError("must be a port number from 0 to 65535 (0: any free port)")
        return port


class _Endpoint(_Checked):
    name = "URL"

    def check(self, value: str) -> str:
        try:  # the rule of TelemetryConfig itself, in the words of the command line
            TelemetryConfig(otlp_endpoint=value, exporter="otlp")
        except ValueError:
            raise ValueError(
                "must be a collector's base URL such as http://localhost:4317 (grpc) or "
                "http://localhost:4318 (http/protobuf)"
            ) from None
        return value.strip()


class _Text(_Checked):
    name = "TEXT"

    def check(self, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class _Bool(click.types.BoolParamType):
    """A boolean whose environment twin may say 1/0, true/false, yes/no, on/off."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, bool):
            return value
        normal = str(value).strip().lower()
        if normal in ("1", "true", "yes", "on"):
            return True
        if normal in ("0", "false", "no", "off"):
            return False
        raise _BadValue("must be one of 1/0, true/false, yes/no, on/off", str(value), ctx, param)


class _Listed(_Checked):
    """An item of a repeatable option whose environment twin is comma-separated."""

    envvar_list_splitter = ","

    def split_envvar_value(self, rv: str) -> list[str]:
        return [item.strip() for item in rv.split(",") if item.strip()]


class _Pattern(_Listed):
    name = "PATTERN"

    def check(self, value: str) -> str:
        if is_preset(value):
            return parse_preset(value)  # its ValueError names the known presets
        try:
            return parse_pattern(value).text
        except ValueError:
            raise ValueError(f"not a valid pattern; use {PATTERN_FORMS}") from None


class _Model(_Listed):
    name = "PATTERN=NAME"

    def check(self, value: str) -> tuple[str, str]:
        return parse_model(value)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _bad_value_line(exc: _BadValue) -> str:
    """``--flag VALUE: problem`` or ``VAR=VALUE: problem``: named as the user gave it."""
    param, ctx = exc.param, exc.ctx
    envvar = param.envvar if param is not None and isinstance(param.envvar, str) else None
    from_env = (
        ctx is not None
        and param is not None
        and param.name is not None
        and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
    )
    if from_env and envvar is not None:
        raw = os.environ.get(envvar, exc.item)
        problem = exc.problem
        if isinstance(param, click.Option) and param.multiple:  # say which item of the list
            joint = {"not": " is ", "must": " "}.get(problem.split(" ", 1)[0], ": ")
            problem = f"{exc.item!r}{joint}{problem}"
        return f"{typed_as(envvar, raw)}: {problem}"
    flag = param.opts[0] if isinstance(param, click.Option) else "value"
    return f"{typed_as(flag, exc.item)}: {exc.problem}"


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
        except _BadValue as exc:
            raise OneLineUsageError(_bad_value_line(exc)) from None
        except click.UsageError as exc:
            raise OneLineUsageError(exc.format_message()) from None


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
    "module:*, module:Class.*, package.*:*; !PATTERN excludes what it matches; @NAME is a "
    "preset: @openai, @anthropic or @langgraph wrap that library's calls. The program's "
    "own module is its file stem as written (app for app.py, my-agent for my-agent.py) or its "
    "-m name. A pattern that is not an exclusion replaces the default targets; so does a preset. "
    "Env: TINYLLM_INSTRUMENT_TARGETS, comma-separated.",
)
@click.option(
    "--default-targets/--no-default-targets",
    default=True,
    type=_Bool(),
    envvar=ENV_DEFAULT_TARGETS,
    help="Without --instrument: wrap the program's own functions (app:* for app.py, a package's "
    "modules for -m) except its entry point: main, run, and a function the "
    "'if __name__ == \"__main__\":' block calls once; each call of what it calls is then a "
    "trace of its own. --no-default-targets: wrap only what --instrument names. "
    "Env: TINYLLM_INSTRUMENT_DEFAULT_TARGETS=0 turns it off.",
)
@click.option(
    "--model",
    "models",
    type=_Model(),
    multiple=True,
    envvar=ENV_MODELS,
    help="The model that what PATTERN selects calls, as NAME (repeatable), e.g. "
    "--model 'app:call_model=gpt-4o-mini'. Env: TINYLLM_INSTRUMENT_MODELS, comma-separated.",
)
@click.option(
    "--tracing/--no-tracing",
    default=None,
    type=_Bool(),
    envvar=ENV_TRACING,
    help="Record and export spans. Default: on; with no --tracing, --exporter or "
    "--otlp-endpoint, each trace is printed as a tree on stderr, so the program's stdout stays "
    "its own.",
)
@click.option(
    "--exporter",
    type=_OneOf(EXPORTERS),
    envvar=ENV_EXPORTER,
    help="Where spans go: tree (the default: each trace printed on stdout as a tree when its "
    "root span ends; on stderr when no tracing option is given), console (one JSON document "
    "per span on stdout), otlp (the default with --otlp-endpoint) or none.",
)
@click.option(
    "--otlp-endpoint",
    type=_Endpoint(),
    envvar=ENV_OTLP_ENDPOINT,
    help="Collector base URL; implies --exporter otlp.",
)
@click.option(
    "--otlp-protocol",
    type=_OneOf(OTLP_PROTOCOLS),
    default="grpc",
    show_default=True,
    envvar=ENV_OTLP_PROTOCOL,
)
@click.option(
    "--sampling-rate",
    type=_Rate(),
    default=1.0,
    show_default=True,
    envvar=ENV_SAMPLING_RATE,
    help="Fraction of traces kept, 0 to 1.",
)
@click.option(
    "--metrics-port",
    type=_Port(),
    envvar=ENV_METRICS_PORT,
    help="Serve /metrics on this port for the life of the program (0: any free port).",
)
@click.option(
    "--metrics-host",
    type=_Text(),
    default="127.0.0.1",
    show_default=True,
    envvar=ENV_METRICS_HOST,
    help="Address of /metrics; pass 0.0.0.0 to expose it on purpose.",
)
@click.option(
    "--log-format",
    type=_OneOf(LOG_FORMATS),
    envvar=ENV_LOG_FORMAT,
    help="Configure logging (root logger and structlog). Unset, with --log-level and --log-file "
    "unset too: the program's own logging setup is left alone.",
)
@click.option(
    "--log-level",
    type=_OneOf(LOG_LEVELS, upper=True),
    envvar=ENV_LOG_LEVEL,
)
@click.option(
    "--log-file", metavar="FILE", type=_Text(), envvar=ENV_LOG_FILE, help="Log lines go to FILE."
)
@click.option(
    "--service-name",
    type=_Text(),
    envvar=ENV_SERVICE_NAME,
    help="service.name of the spans and the app field of log lines (default: the script's stem "
    "or the module name).",
)
@click.option(
    "--graph",
    metavar="NAME",
    type=_Text(),
    envvar=ENV_GRAPH,
    help="Qualname (or module:qualname) of the wrapped callable that is the graph. Default: the "
    "first wrapped callable on the stack is.",
)
@click.option(
    "--print-plan",
    is_flag=True,
    default=False,
    type=_Bool(),
    envvar=ENV_PRINT_PLAN,
    help="At exit, print on stderr what each pattern matched. (A pattern, --graph or --model "
    "that matched nothing is said at exit in any case, one line each.)",
)
@click.option(
    "--otel-instrumentations/--no-otel-instrumentations",
    default=True,
    type=_Bool(),
    envvar=ENV_OTEL_INSTRUMENTATIONS,
    help="With tracing on, load every installed OpenTelemetry instrumentation (the "
    "opentelemetry_instrumentor entry points: opentelemetry-instrumentation-httpx, requests, "
    "fastapi...) on the kit's provider, as opentelemetry-instrument does; "
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=name,... leaves some out. --print-plan says what "
    "each became. Env: TINYLLM_INSTRUMENT_OTEL_INSTRUMENTATIONS=0 turns it off.",
)
@click.option("-m", "module", metavar="MODULE", help="Run a module, as python -m does.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="(SCRIPT | -m MODULE) [ARGS]...")
@click.pass_context
def run(
    ctx: click.Context,
    patterns: tuple[str, ...],
    default_targets: bool,
    models: tuple[tuple[str, str], ...],
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
    otel_instrumentations: bool,
    module: str | None,
    args: tuple[str, ...],
) -> None:
    """Run SCRIPT (or -m MODULE) with ARGS in this process, as __main__, under the kit.

    With no option, the program's own functions are wrapped (not its entry point) and each
    trace is printed on stderr as a tree: tinyllm-instrument run app.py

    \b
    Example:
      tinyllm-instrument run --instrument 'app:*' --instrument '!app:main' \\
          --otlp-endpoint http://localhost:4317 --metrics-port 9464 --log-format json app.py
    """
    if module is None and not args:
        raise OneLineUsageError("give the program to run: SCRIPT [ARGS]... or -m MODULE [ARGS]...")
    script = None if module is not None else args[0]
    program_args = args if module is not None else args[1:]
    origins = {}
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name or "") is ParameterSource.ENVIRONMENT:
            field_name = {"patterns": "targets"}.get(param.name or "", param.name or "")
            origins[field_name] = str(param.envvar)
    assigned: dict[str, str] = {}
    for pattern, name in models:
        if assigned.get(pattern, name) != name:
            given = typed_as(origins.get("models", "--model"), f"{pattern}={name}")
            raise OneLineUsageError(
                f"{given}: {pattern} already has model {assigned[pattern]!r}; give each "
                "pattern one model"
            )
        assigned[pattern] = name
    options = RunOptions(
        targets=patterns,
        default_targets=default_targets,
        models=tuple(assigned.items()),
        tracing=tracing,
        exporter=exporter,
        otlp_endpoint=otlp_endpoint,
        otlp_protocol=otlp_protocol,
        sampling_rate=sampling_rate,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
        log_level=log_level,
        log_file=log_file,
        service_name=service_name,
        graph=graph,
        print_plan=print_plan,
        otel_instrumentations=otel_instrumentations,
        origins=origins,
    )
    try:
        code = run_program(options, script=script, module=module, args=program_args)
    except RunError as exc:
        raise OneLineUsageError(str(exc)) from None
    sys.exit(code)
