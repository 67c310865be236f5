"""Check: the option tables of docs/run.md and docs/tracing.md name every option there is."""

import dataclasses
import re
from pathlib import Path

from tinyllm_instrument.cli.run import run
from tinyllm_instrument.telemetry import TelemetryConfig

docs = Path(__file__).resolve().parents[2] / "docs"

run_page = (docs / "run.md").read_text()
table = run_page[run_page.index("## Options") : run_page.index("## Target patterns")]
documented = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-m)\b", table)) - {"--help"}
actual = {
    opt
    for param in run.params
    for opt in [*param.opts, *param.secondary_opts]
    if opt.startswith("-") and opt not in ("--help", "-h")
}
assert documented == actual, (
    f"docs/run.md's options and the run command differ: {documented ^ actual}"
)
for param in run.params:
    if param.envvar:
        assert param.envvar.split("TINYLLM_INSTRUMENT_")[1] in table, param.envvar

tracing_page = (docs / "tracing.md").read_text()
table = tracing_page[
    tracing_page.index("| field |") : tracing_page.index("Every field is validated")
]
documented = set(re.findall(r"`(\w+)`", table.split("\n", 2)[2]))
fields = {f.name for f in dataclasses.fields(TelemetryConfig) if f.init}
assert fields <= documented, f"docs/tracing.md does not describe {fields - documented}"
