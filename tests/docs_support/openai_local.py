"""Setup for python blocks: a local OpenAI-compatible server, its URL as the program's argument.

The block's ``sys.argv[1]`` is the server's base URL, as a user passes their local vLLM or
Ollama server's; any API key is accepted. The server stops with the interpreter.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for llm_servers

from llm_servers import OpenAIServer  # noqa: E402

DOC_SERVER = OpenAIServer(
    reply="Refunds take 5 days.", input_tokens=31, output_tokens=6, api_key=None
)
DOC_SERVER.start()
sys.argv = ["support.py", DOC_SERVER.base_url]
