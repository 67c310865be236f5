"""Local OpenAI and Anthropic API servers for tests: the real HTTP protocols, canned replies.

Each server listens on 127.0.0.1 with an ephemeral port and speaks enough of its provider's HTTP API
that the official SDKs work against it unmodified, streaming included::

    with OpenAIServer(reply="Hi there.", input_tokens=12, output_tokens=5) as server:
        with OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        server.requests[0].body["model"]  # every request is recorded, parsed

- ``OpenAIServer``: ``POST /v1/chat/completions``, ``/v1/completions`` (legacy), ``/v1/responses``,
  each plain or streamed (SSE, ``data: [DONE]``; ``stream_options.include_usage`` adds the final
  usage chunk), and ``POST /v1/embeddings`` (float or base64, as the SDK asks).
- ``AnthropicServer``: ``POST /v1/messages``, plain or ``stream: true`` with the real event sequence
  (``message_start`` .. ``message_stop``), which ``messages.create(stream=True)`` and the
  ``messages.stream()`` helper both read.

Replies, token counts and the model name are plain attributes (change them between calls). Token
fields are reported as configured, in each provider's own terms: OpenAI's ``prompt_tokens``
includes its ``cached_tokens``; Anthropic's ``input_tokens`` excludes ``cache_read_input_tokens``.
Like the real API, Anthropic's ``message_start`` already reports ``output_tokens: 1``;
``message_delta`` then carries the cumulative total (set ``full_delta_usage`` to also repeat the
input and cache counts there, as the current API does).

Failures are provider-shaped: ``fail(429)`` answers with the status, the provider's error body and
request-id header, so the SDK raises its typed exception (``openai.RateLimitError``...);
``stream_error_after = n`` breaks a stream after ``n`` text deltas with the provider's in-stream
error. Requests with a wrong API key get the provider's 401. Create clients with ``max_retries=0``
(``client_kwargs()`` does) where failures are simulated, or the SDK retries them.

Test modules import the classes (``from llm_servers import OpenAIServer``) or use the
``openai_server`` / ``anthropic_server`` fixtures, which tests/conftest.py re-exports.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pytest

__all__ = [
    "AnthropicServer",
    "OpenAIServer",
    "ReceivedRequest",
    "anthropic_server",
    "openai_server",
]

_JSON = dict[str, Any]
#: A route answers with a JSON body, or with the SSE events of a stream (each already framed).
_Answer = _JSON | Iterator[str]
_S = TypeVar("_S", bound="_ProviderServer")


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as a server received it.

    ``headers`` has lower-cased names; ``body`` is the parsed JSON body (None when the body is not
    JSON); ``raw`` the bytes as sent.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes


class _StreamBroken(Exception):
    """Raised inside a stream to cut it with the provider's in-stream error."""


@dataclass
class _Failure:
    status: int
    message: str | None
    remaining: int | None  # None: every request


class _ProviderServer:
    """The core both servers share: HTTP plumbing, settings, the request record, failures."""

    #: Sent as the id of every answer, e.g. ``x-request-id`` (OpenAI) or ``request-id``.
    request_id_header: ClassVar[str]
    #: The SDK's ``base_url`` is ``url + base_path``.
    base_path: ClassVar[str] = ""

    def __init__(
        self,
        *,
        reply: str = "Hello from the test server.",
        input_tokens: int = 12,
        output_tokens: int = 5,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        served_model: str | None = None,
        api_key: str | None = "",
        chunk_delay: float = 0.0,
    ) -> None:
        """Configure the canned answers; ``start()`` (or ``with``) opens the port.

        Args:
            reply: The assistant's text; streams send it in word-sized deltas (``stream_chunks``).
            input_tokens: Prompt tokens reported in every usage block.
            output_tokens: Completion tokens reported in every usage block.
            cached_tokens: Prompt tokens read from the cache (OpenAI ``cached_tokens``, Anthropic
                ``cache_read_input_tokens``).
            reasoning_tokens: OpenAI ``reasoning_tokens`` (part of ``output_tokens``).
            served_model: The model named in answers; None echoes the requested model.
            api_key: The key clients must send; "" makes a fresh random one (``self.api_key``),
                None accepts any key.
            chunk_delay: Seconds slept before each streamed text delta (time-to-first-token tests).
        """
        self.reply = reply
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cached_tokens = cached_tokens
        self.reasoning_tokens = reasoning_tokens
        self.served_model = served_model
        self.api_key: str | None = f"sk-test-{secrets.token_hex(12)}" if api_key == "" else api_key
        self.chunk_delay = chunk_delay
        #: The text deltas of a stream; None splits ``reply`` into words with their spaces.
        self.stream_chunks: list[str] | None = None
        #: When set, a stream is cut with the provider's in-stream error after this many deltas.
        self.stream_error_after: int | None = None
        self._cond = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._failure: _Failure | None = None
        self._answered = 0
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the SDK's ``base_url`` must be."""
        return self.url + self.base_path

    def client_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for the SDK client: this server, its key, no retries."""
        return {"base_url": self.base_url, "api_key": self.api_key or "sk-any", "max_retries": 0,
                **overrides}  # fmt: skip

    def start(self: _S) -> _S:
        self._server = _HttpServer(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what tests read and set -----------------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every request received so far, failed ones included, in arrival order."""
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Block until at least ``n`` requests arrived; return them all.

        Raises:
            AssertionError: fewer arrived within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise AssertionError(
                    f"expected {n} request(s) within {timeout}s, got "
                    f"{[r.path for r in self._requests]}"
                )
            return list(self._requests)

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._cond:
            self._requests.clear()

    def fail(self, status: int, *, times: int | None = None, message: str | None = None) -> None:
        """Answer requests with ``status`` and the provider's error body until ``recover()``.

        Args:
            status: HTTP status, e.g. 400, 401, 429, 500, 503 (529 for Anthropic's overloaded).
            times: Fail only this many requests, then answer normally again.
            message: The error message; a provider-like default otherwise.
        """
        with self._cond:
            self._failure = _Failure(status, message, times)

    def recover(self) -> None:
        """Stop failing requests (see ``fail``) and streams (``stream_error_after``)."""
        with self._cond:
            self._failure = None
            self.stream_error_after = None

    # -- helpers for the routes -------------------------------------------------------------------

    def model_for(self, body: _JSON) -> str:
        """The model an answer names: ``served_model``, else the requested one."""
        return self.served_model or str(body.get("model") or "unknown-model")

    def chunks(self) -> list[str]:
        """The text deltas of a stream, in order; they join to ``reply``."""
        if self.stream_chunks is not None:
            return list(self.stream_chunks)
        return re.findall(r"\s*\S+\s*", self.reply) or [self.reply]

    def deltas(self) -> Iterator[str]:
        """Yield each delta after ``chunk_delay``; cut the stream per ``stream_error_after``."""
        cut = self.stream_error_after
        for sent, chunk in enumerate(self.chunks()):
            if cut is not None and sent >= cut:
                raise _StreamBroken
            if self.chunk_delay > 0:
                time.sleep(self.chunk_delay)
            yield chunk
        if cut is not None:  # at or past the last delta: cut before the stream's end
            raise _StreamBroken

    def next_id(self, prefix: str) -> str:
        """A readable id unique within this server: ``<prefix>test000001``..."""
        with self._cond:
            self._answered += 1
            return f"{prefix}test{self._answered:06d}"

    # -- per provider ---------------------------------------------------------------------------

    def routes(self) -> dict[str, Callable[[_JSON], _Answer]]:
        raise NotImplementedError

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def error_body(self, status: int, message: str | None) -> _JSON:
        raise NotImplementedError

    def stream_error_event(self) -> str:
        raise NotImplementedError

    # -- request handling (called by the handler thread) ---------------------------------------

    def _record(self, request: ReceivedRequest) -> _Failure | None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
            failure = self._failure
            if failure is not None and failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failure = None
            return failure


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection ends its thread after this

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._handle()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._handle()

    def _handle(self) -> None:
        provider = self.server.provider
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        split = urllib.parse.urlsplit(self.path)
        request = ReceivedRequest(
            method=self.command,
            path=split.path,
            query=urllib.parse.parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw=raw,
        )
        failure = provider._record(request)
        if failure is not None:
            self._send_json(failure.status, provider.error_body(failure.status, failure.message))
            return
        if not provider.authorized(request.headers):
            self._send_json(401, provider.error_body(401, None))
            return
        route = provider.routes().get(split.path)
        if route is None or self.command != "POST" or not isinstance(body, dict):
            message = f"Unknown request URL: {self.command} {split.path}"
            self._send_json(404, provider.error_body(404, message))
            return
        answer = route(body)
        if isinstance(answer, dict):
            self._send_json(200, answer)
        else:
            self._send_stream(answer)

    def _request_id_header(self) -> None:
        self.send_header(self.server.provider.request_id_header, f"req_{secrets.token_hex(8)}")

    def _send_json(self, status: int, payload: _JSON) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._request_id_header()
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: Iterator[str]) -> None:
        # Chunked, one chunk per event and flushed, as the real APIs stream: a client sees each
        # delta when it is sent, so time-to-first-token is measurable.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self._request_id_header()
        self.end_headers()
        try:
            for event in events:
                self._write_chunk(event)
        except _StreamBroken:
            self._write_chunk(self.server.provider.stream_error_event())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, event: str) -> None:
        data = event.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: _ProviderServer) -> None:
        self.provider = provider
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-stream (an abandoned stream) is a case under test, not noise.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """End keep-alive connections, so their threads close their sockets and exit."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _sse_data(payload: _JSON) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _sse_event(name: str, payload: _JSON) -> str:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n"


def _embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-free vector from the text's hash (same text, same vector)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255.0, 6) for i in range(dimensions)]


class OpenAIServer(_ProviderServer):
    """The OpenAI API on 127.0.0.1: chat completions, completions, responses, embeddings.

    Use ``OpenAI(base_url=server.base_url, api_key=server.api_key)`` (``base_url`` ends in ``/v1``).
    ``finish_reason`` (default "stop") and ``embedding_dimensions`` (default 8; a request's
    ``dimensions`` wins) are attributes too.
    """

    request_id_header = "x-request-id"
    base_path = "/v1"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.finish_reason = "stop"
        self.embedding_dimensions = 8

    def client(self, **overrides: Any) -> Any:
        """An ``openai.OpenAI`` for this server (close it: ``with server.client() as client``)."""
        import openai

        return openai.OpenAI(**self.client_kwargs(**overrides))

    def async_client(self, **overrides: Any) -> Any:
        """An ``openai.AsyncOpenAI`` for this server; create and close it inside the event loop."""
        import openai

        return openai.AsyncOpenAI(**self.client_kwargs(**overrides))

    def routes(self) -> dict[str, Callable[[_JSON], _Answer]]:
        return {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
        }

    def authorized(self, headers: dict[str, str]) -> bool:
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    _ERRORS: ClassVar[dict[int, tuple[str, str | None, str]]] = {
        400: ("invalid_request_error", None, "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
        404: ("invalid_request_error", "unknown_url", "Not found."),
        429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached for requests."),
        500: ("server_error", None, "The server had an error while processing your request."),
        503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    }

    def error_body(self, status: int, message: str | None) -> _JSON:
        kind, code, default = self._ERRORS.get(status, ("server_error", None, "Server error."))
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    def stream_error_event(self) -> str:
        return _sse_data(self.error_body(500, "The server had an error while streaming."))

    # -- usage blocks --------------------------------------------------------------------------

    def _completion_usage(self) -> _JSON:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _response_usage(self) -> _JSON:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    # -- chat completions and legacy completions -----------------------------------------------

    def _chat(self, body: _JSON) -> _Answer:
        head: _JSON = {"id": self.next_id("chatcmpl-"), "created": int(time.time()),
                       "model": self.model_for(body), "system_fingerprint": "fp_test"}  # fmt: skip
        if not body.get("stream"):
            message: _JSON = {"role": "assistant", "content": self.reply, "refusal": None,
                              "annotations": []}  # fmt: skip
            answer: _JSON = {"index": 0, "message": message, "logprobs": None,
                             "finish_reason": self.finish_reason}  # fmt: skip
            return {**head, "object": "chat.completion", "choices": [answer],
                    "usage": self._completion_usage(), "service_tier": "default"}  # fmt: skip

        def choice(delta: _JSON, finish: str | None = None) -> _JSON:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        first = choice({"role": "assistant", "content": "", "refusal": None})
        return self._chunk_stream(
            body, {**head, "object": "chat.completion.chunk"},
            first=first,
            delta=lambda text: choice({"content": text}),
            last=choice({}, self.finish_reason),
        )  # fmt: skip

    def _completions(self, body: _JSON) -> _Answer:
        head = {"id": self.next_id("cmpl-"), "object": "text_completion",
                "created": int(time.time()), "model": self.model_for(body)}  # fmt: skip

        def choice(text: str, finish: str | None = None) -> _JSON:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

        if not body.get("stream"):
            return {**head, "choices": [choice(self.reply, self.finish_reason)],
                    "usage": self._completion_usage()}  # fmt: skip
        return self._chunk_stream(
            body, head, first=None, delta=choice, last=choice("", self.finish_reason)
        )

    def _chunk_stream(
        self,
        body: _JSON,
        head: _JSON,
        *,
        first: _JSON | None,
        delta: Callable[[str], _JSON],
        last: _JSON,
    ) -> Iterator[str]:
        """The chunk stream both completions APIs use, with the usage chunk when asked for."""
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        if first is not None:
            yield _sse_data({**head, "choices": [first], **extra})
        for text in self.deltas():
            yield _sse_data({**head, "choices": [delta(text)], **extra})
        yield _sse_data({**head, "choices": [last], **extra})
        if include_usage:
            yield _sse_data({**head, "choices": [], "usage": self._completion_usage()})
        yield "data: [DONE]\n\n"

    # -- responses -----------------------------------------------------------------------------

    def _responses(self, body: _JSON) -> _Answer:
        response_id = self.next_id("resp_")
        item_id = f"msg_{response_id.removeprefix('resp_')}"
        text_part = {"type": "output_text", "text": self.reply, "annotations": [], "logprobs": []}
        item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [text_part]}  # fmt: skip
        response = {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "completed_at": int(time.time()),
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": self.model_for(body),
            "output": [item],
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": bool(body.get("store", True)),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self._response_usage(),
            "user": None,
            "metadata": body.get("metadata") or {},
        }
        if not body.get("stream"):
            return response
        return self._response_stream(response, item, text_part)

    def _response_stream(self, response: _JSON, item: _JSON, part: _JSON) -> Iterator[str]:
        """The Responses API event sequence, ``response.created`` .. ``response.completed``."""
        sequence = iter(range(1_000_000))

        def event(name: str, **fields: Any) -> str:
            return _sse_event(name, {"type": name, "sequence_number": next(sequence), **fields})

        pending = {**response, "status": "in_progress", "output": [], "usage": None,
                   "completed_at": None}  # fmt: skip
        at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        yield event("response.created", response=pending)
        yield event("response.in_progress", response=pending)
        open_item = {**item, "status": "in_progress", "content": []}
        yield event("response.output_item.added", output_index=0, item=open_item)
        empty = {**part, "text": ""}
        yield event("response.content_part.added", part=empty, **at)
        text = ""
        for delta in self.deltas():
            text += delta
            yield event("response.output_text.delta", delta=delta, logprobs=[], **at)
        done_part = {**part, "text": text}
        yield event("response.output_text.done", text=text, logprobs=[], **at)
        yield event("response.content_part.done", part=done_part, **at)
        done_item = {**item, "content": [done_part]}
        yield event("response.output_item.done", output_index=0, item=done_item)
        yield event("response.completed", response={**response, "output": [done_item]})

    # -- embeddings ----------------------------------------------------------------------------

    def _embeddings(self, body: _JSON) -> _Answer:
        raw_input = body.get("input")
        inputs = [raw_input] if isinstance(raw_input, str) else list(raw_input or [])
        dimensions = int(body.get("dimensions") or self.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = _embedding(json.dumps(item), dimensions)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        usage = {"prompt_tokens": self.input_tokens, "total_tokens": self.input_tokens}
        return {"object": "list", "data": data, "model": self.model_for(body), "usage": usage}


class AnthropicServer(_ProviderServer):
    """The Anthropic Messages API on 127.0.0.1: ``POST /v1/messages``, plain or streamed.

    Use ``Anthropic(base_url=server.base_url, api_key=server.api_key)``. ``stop_reason`` (default
    "end_turn") and ``full_delta_usage`` (default False) are attributes too.
    """

    request_id_header = "request-id"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.stop_reason = "end_turn"
        self.full_delta_usage = False

    def client(self, **overrides: Any) -> Any:
        """An ``anthropic.Anthropic`` for this server (close it: ``with server.client() as c``)."""
        import anthropic

        return anthropic.Anthropic(**self.client_kwargs(**overrides))

    def async_client(self, **overrides: Any) -> Any:
        """An ``anthropic.AsyncAnthropic``; create and close it inside the event loop."""
        import anthropic

        return anthropic.AsyncAnthropic(**self.client_kwargs(**overrides))

    def routes(self) -> dict[str, Callable[[_JSON], _Answer]]:
        return {"/v1/messages": self._messages}

    def authorized(self, headers: dict[str, str]) -> bool:
        if self.api_key is None:
            return True
        return (headers.get("x-api-key") == self.api_key
                or headers.get("authorization") == f"Bearer {self.api_key}")  # fmt: skip

    _ERRORS: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("invalid_request_error", "Invalid request."),
        401: ("authentication_error", "invalid x-api-key"),
        403: ("permission_error", "Your API key does not have permission to use this resource."),
        404: ("not_found_error", "Not found."),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
        500: ("api_error", "Internal server error"),
        529: ("overloaded_error", "Overloaded"),
    }

    def error_body(self, status: int, message: str | None) -> _JSON:
        kind, default = self._ERRORS.get(status, ("api_error", "Internal server error"))
        return {"type": "error", "error": {"type": kind, "message": message or default},
                "request_id": f"req_{secrets.token_hex(8)}"}  # fmt: skip

    def stream_error_event(self) -> str:
        return _sse_event("error", self.error_body(529, None))

    def _usage(self, output_tokens: int) -> _JSON:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cached_tokens,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _messages(self, body: _JSON) -> _Answer:
        message = {
            "id": self.next_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self.model_for(body),
            "content": [{"type": "text", "text": self.reply}],
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": self._usage(self.output_tokens),
        }
        if not body.get("stream"):
            return message
        return self._message_stream(message)

    def _message_stream(self, message: _JSON) -> Iterator[str]:
        """``message_start``, one text block's start/deltas/stop, ``message_delta``, ``_stop``."""
        started = {**message, "content": [], "stop_reason": None,
                   "usage": self._usage(min(1, self.output_tokens))}  # fmt: skip
        yield _sse_event("message_start", {"type": "message_start", "message": started})
        block = {"type": "content_block_start", "index": 0,
                 "content_block": {"type": "text", "text": ""}}  # fmt: skip
        yield _sse_event("content_block_start", block)
        yield _sse_event("ping", {"type": "ping"})
        for text in self.deltas():
            delta = {"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": text}}  # fmt: skip
            yield _sse_event("content_block_delta", delta)
        yield _sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        usage: _JSON = {"output_tokens": self.output_tokens}
        if self.full_delta_usage:
            usage = self._usage(self.output_tokens)
            usage.pop("service_tier")
        yield _sse_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": usage,
        })  # fmt: skip
        yield _sse_event("message_stop", {"type": "message_stop"})


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started ``OpenAIServer`` with the default settings, stopped after the test."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicServer]:
    """A started ``AnthropicServer`` with the default settings, stopped after the test."""
    with AnthropicServer() as server:
        yield server
