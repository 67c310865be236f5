"""Request logging: HTTP requests and responses with headers and bodies redacted, bodies cut."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import redaction as _redaction
from ._logger import get_logger
from ._render import json_default as _json_default

__all__ = ["DEFAULT_MAX_BODY_CHARS", "RequestLogger", "get_request_logger"]

#: Bodies longer than this (characters, after JSON encoding for dicts/lists) are truncated.
DEFAULT_MAX_BODY_CHARS = 2048


class RequestLogger:
    """Logs HTTP requests and responses with headers and bodies redacted and long bodies cut.

    Args:
        logger_name: the ``logger`` field of its lines.
        max_body_chars: keep at most this many characters of a body, then
            ``...[truncated N chars]``.

    Example:
        >>> req_logger = get_request_logger()
        >>> req_logger.log_request("req-123", "POST", "/api/generate",
        ...     headers={"Authorization": "Bearer sk-abc123"}, body={"prompt": "Hello"})
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        logger_name: str = "tinyllm_instrument.requests",
        max_body_chars: int = DEFAULT_MAX_BODY_CHARS,
    ) -> None:
        if (
            isinstance(max_body_chars, bool)
            or not isinstance(max_body_chars, int)
            or max_body_chars < 0
        ):
            raise ValueError(f"max_body_chars must be an int >= 0, got {max_body_chars!r}")
        self.max_body_chars = max_body_chars
        self._logger = get_logger(logger_name)

    def log_request(
        self,
        request_id: str,
        method: str,
        path: str,
        headers: Any = None,
        body: Any = None,
    ) -> None:
        """Log ``http_request`` with the request's method, path, headers and body."""
        fields: dict[str, Any] = {"request_id": request_id, "method": method, "path": path}
        self._add_payload(fields, headers, body)
        self._logger.info("http_request", **fields)

    def log_response(
        self,
        request_id: str,
        status_code: int,
        headers: Any = None,
        body: Any = None,
        duration_ms: float | None = None,
    ) -> None:
        """Log ``http_response``: INFO below 400, WARNING for 4xx, ERROR for 5xx."""
        fields: dict[str, Any] = {"request_id": request_id, "status_code": status_code}
        if duration_ms is not None:
            fields["duration_ms"] = duration_ms
        self._add_payload(fields, headers, body)
        level = "info"
        if isinstance(status_code, int) and not isinstance(status_code, bool):
            level = "error" if status_code >= 500 else "warning" if status_code >= 400 else "info"
        getattr(self._logger, level)("http_response", **fields)

    def _add_payload(self, fields: dict[str, Any], headers: Any, body: Any) -> None:
        policy = _redaction.get_redaction_policy()
        if headers is not None:
            fields["headers"] = _redact_headers(policy, headers)
        if body is not None:  # 0, "" and {} are bodies too
            fields["body"] = self._body(policy, body)

    def _body(self, policy: _redaction.RedactionPolicy, body: Any) -> Any:
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body).decode("utf-8", "replace")
        red = policy.redact(body, scan_objects=True)
        if isinstance(red, str):
            text = red
        elif isinstance(red, (dict, list, tuple)):
            try:
                text = json.dumps(red, default=_json_default, ensure_ascii=False)
            except Exception:
                text = _json_default(red)
            if len(text) <= self.max_body_chars:
                return red
        else:
            return red
        if len(text) > self.max_body_chars:
            cut = len(text) - self.max_body_chars
            return f"{text[: self.max_body_chars]}...[truncated {cut} chars]"
        return text


def _redact_headers(policy: _redaction.RedactionPolicy, headers: Any) -> Any:
    if isinstance(headers, Mapping):
        return policy.redact(headers, scan_objects=True)
    try:  # a list of (name, value) pairs, as ASGI and http.client give them
        pairs = []
        for name, value in headers:
            if isinstance(name, bytes):
                name = name.decode("latin-1")
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            pairs.append(
                [
                    name,
                    _redaction.REDACTED
                    if policy.is_sensitive_key(name)
                    else policy.redact(value, scan_objects=True),
                ]
            )
        return pairs
    except Exception:
        return policy.redact(headers, scan_objects=True)


def get_request_logger(
    logger_name: str = "tinyllm_instrument.requests", max_body_chars: int = DEFAULT_MAX_BODY_CHARS
) -> RequestLogger:
    """A `RequestLogger`; headers and bodies are redacted even before `configure_logging`.

    Raises:
        ValueError: ``max_body_chars`` is negative or not an int.
    """
    return RequestLogger(logger_name, max_body_chars)
