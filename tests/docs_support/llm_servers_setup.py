"""Background setup for shell blocks: local OpenAI and Anthropic API servers, until SIGINT.

The OpenAI-compatible one speaks chat completions plain and SSE-streamed (with the final usage
chunk ``stream_options.include_usage`` asks for), like a local vLLM or Ollama server; any API key
is accepted. Prints ``PORTS 8000=<openai port> 8001=<anthropic port>`` and ``READY``; the harness
rewrites :8000 and :8001 in the block.
"""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for llm_servers

from llm_servers import AnthropicServer, OpenAIServer  # noqa: E402

openai_server = OpenAIServer(reply="Hi there!", input_tokens=12, output_tokens=5, api_key=None)
anthropic_server = AnthropicServer(reply="Hello!", input_tokens=7, output_tokens=3, api_key=None)
openai_server.start()
anthropic_server.start()
print(f"PORTS 8000={openai_server.port} 8001={anthropic_server.port}", flush=True)
print("READY", flush=True)
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))  # also when started with SIGINT ignored
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    signal.pause()
finally:
    openai_server.stop()
    anthropic_server.stop()
