"""Check: the README's quickstart ties its pillars together as the README says.

The output itself is compared line by line by tests/test_docs_run.py; here, what a comparison
with free ids cannot see: the log line's ids are those of the trace the tree printed.
"""

import json
import re

text = DOC_OUTPUT()  # noqa: F821
(log_line,) = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
(header,) = re.findall(r"^trace ([0-9a-f]{8}) · quickstart$", text, re.MULTILINE)
assert log_line["trace_id"].startswith(header), (log_line, header)
assert (log_line["node"], log_line["graph"], log_line["event"]) == ("retrieve", "rag", "retrieving")
assert "version" not in log_line  # the kit's version is no field of the user's log lines
assert events.get_events()[-1].data["duration_ms"] > 0  # noqa: F821
