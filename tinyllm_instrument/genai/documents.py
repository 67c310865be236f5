"""A retriever's (or reranker's) result as ``retrieval.documents.{i}.document.*`` span attributes.

A result is a sequence of documents when its first item is one: a string; a mapping with
``content`` / ``page_content`` / ``text``; an object with one of those attributes (LangChain's
``Document``, LlamaIndex's ``NodeWithScore`` through its ``node``); or a ``(document, score)``
pair, as vector stores' ``similarity_search_with_score`` return. The first N documents are
written, each content cut to a byte budget and redacted, plus the full count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import Stage, report_internal_error
from . import conventions as c
from .payloads import DEFAULT_PAYLOAD_BYTES, bounded_text, serialize_payload
from .results import get_field

__all__ = [
    "DEFAULT_MAX_DOCUMENTS",
    "DEFAULT_METADATA_BYTES",
    "document_attributes",
]

#: Documents written per span; the count attribute always holds the full number.
DEFAULT_MAX_DOCUMENTS = 20
#: Byte budget of one document's metadata JSON.
DEFAULT_METADATA_BYTES = 1024

_CONTENT_FIELDS = ("page_content", "content", "text")
_ID_BYTES = 256
_NUMBER = (int, float)


def _is_document(item: Any) -> bool:
    if isinstance(item, str):
        return True
    if isinstance(item, Mapping):
        return any(field in item for field in _CONTENT_FIELDS)
    if isinstance(item, tuple):  # (document, score)
        return (
            len(item) == 2
            and isinstance(item[1], _NUMBER)
            and not isinstance(item[1], bool)
            and _is_document(item[0])
        )
    if isinstance(item, (bytes, bytearray, int, float, list, set)) or item is None:
        return False
    node = getattr(item, "node", None)  # LlamaIndex NodeWithScore
    if node is not None and _has_content(node):
        return True
    return _has_content(item)


def _has_content(obj: Any) -> bool:
    return any(getattr(obj, field, None) is not None for field in _CONTENT_FIELDS)


def _parts(item: Any) -> tuple[Any, Any, Any, Any]:
    """``(content, id, score, metadata)`` of one document; any may be None."""
    if isinstance(item, str):
        return item, None, None, None
    score = None
    if isinstance(item, tuple):
        item, score = item
        if isinstance(item, str):
            return item, None, score, None
    node = None if isinstance(item, Mapping) else getattr(item, "node", None)
    if node is not None and _has_content(node):  # LlamaIndex: the score is on the wrapper
        if score is None:
            score = getattr(item, "score", None)
        item = node
    content = None
    for field in _CONTENT_FIELDS:
        content = get_field(item, field)
        if content is not None:
            break
    doc_id = get_field(item, "id")
    if doc_id is None:
        doc_id = get_field(item, "id_") or get_field(item, "node_id")  # LlamaIndex
    if score is None:
        score = get_field(item, "score")
    return content, doc_id, score, get_field(item, "metadata")


def document_attributes(
    result: Any,
    *,
    prefix: str = c.RETRIEVAL_DOCUMENTS,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    content_bytes: int = DEFAULT_PAYLOAD_BYTES,
    metadata_bytes: int = DEFAULT_METADATA_BYTES,
    include_content: bool = True,
) -> dict[str, Any] | None:
    """The document attributes of a retriever's result, or None when it is not documents.

    Args:
        result: what the retriever returned.
        prefix: ``retrieval.documents`` (a retriever) or ``reranker.output_documents``.
        max_documents: write at most this many documents (the count says how many there were).
        content_bytes: byte budget of each document's content (cut before it is redacted).
        metadata_bytes: byte budget of each document's metadata JSON.
        include_content: write each document's content and metadata (what it says); without,
            only its id and score (which documents were found, and how well) and the count.

    Returns:
        ``{prefix}.{i}.document.content`` / ``.id`` / ``.score`` / ``.metadata`` for the first
        documents, and ``tinyllm.retrieval.documents`` with the count; None when the result is
        not a sequence of documents.

    Never raises: a document that cannot be read is counted as an internal error (stage
    ``capture``) and left out; the others are still written.

    Example:
        >>> attrs = document_attributes([{"page_content": "Paris is in France", "id": "d1",
        ...                               "score": 0.9}, "Lyon too"])
        >>> attrs["retrieval.documents.0.document.id"], attrs["tinyllm.retrieval.documents"]
        ('d1', 2)
    """
    if (
        isinstance(result, (str, bytes, bytearray, Mapping))
        or not isinstance(result, Sequence)
        or not result
    ):
        return None
    try:
        if not _is_document(result[0]):
            return None
        total = len(result)
        head = result[:max_documents]
    except Exception as exc:
        report_internal_error(Stage.CAPTURE, exc)
        return None
    attrs: dict[str, Any] = {c.TINYLLM_RETRIEVAL_DOCUMENTS: total}
    for index, item in enumerate(head):
        try:
            attrs.update(_one(index, item, prefix, content_bytes, metadata_bytes, include_content))
        except Exception as exc:  # the app's odd document: leave it out, counted
            report_internal_error(Stage.CAPTURE, exc)
    return attrs


def _one(
    index: int,
    item: Any,
    prefix: str,
    content_bytes: int,
    metadata_bytes: int,
    include_content: bool,
) -> dict[str, Any]:
    content, doc_id, score, metadata = _parts(item)
    if not include_content:
        content = metadata = None
    attrs: dict[str, Any] = {}
    if isinstance(content, str):
        attrs[c.document_key(index, "content", prefix)] = bounded_text(content, content_bytes)
    elif content is not None:
        attrs[c.document_key(index, "content", prefix)] = serialize_payload(content, content_bytes)[
            0
        ]
    if isinstance(doc_id, str) and doc_id:
        attrs[c.document_key(index, "id", prefix)] = bounded_text(doc_id, _ID_BYTES)
    elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
        attrs[c.document_key(index, "id", prefix)] = str(doc_id)
    if isinstance(score, _NUMBER) and not isinstance(score, bool):
        attrs[c.document_key(index, "score", prefix)] = float(score)
    if metadata is not None and not (isinstance(metadata, Mapping) and not metadata):
        attrs[c.document_key(index, "metadata", prefix)] = serialize_payload(
            metadata, metadata_bytes
        )[0]
    return attrs
