"""A retriever's documents as retrieval.documents.{i}.document.*: shapes, bounds, redaction."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tinyllm_instrument.genai import document_attributes
from tinyllm_instrument.genai.payloads import SCAN_MARGIN
from tinyllm_instrument.metrics import get_metrics_collector
from tinyllm_instrument.redaction import get_redaction_policy, reset_redaction


@pytest.fixture(autouse=True)
def _default_redaction():
    reset_redaction()
    yield
    reset_redaction()


@dataclass
class Document:
    """The shape of LangChain's Document (langchain_core.documents.Document)."""

    page_content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class TextNode:
    text: str
    id_: str


@dataclass
class NodeWithScore:
    """The shape of LlamaIndex's NodeWithScore: the score on the wrapper, the text on the node."""

    node: TextNode
    score: float


def doc(attrs: dict[str, Any], i: int, name: str, prefix: str = "retrieval.documents") -> Any:
    return attrs.get(f"{prefix}.{i}.document.{name}")


def test_strings():
    attrs = document_attributes(["Paris is the capital of France.", "Lyon is in France."])
    assert attrs == {
        "tinyllm.retrieval.documents": 2,
        "retrieval.documents.0.document.content": "Paris is the capital of France.",
        "retrieval.documents.1.document.content": "Lyon is in France.",
    }


def test_mappings_with_each_content_field():
    attrs = document_attributes(
        [
            {"content": "a", "id": "d1", "score": 0.9, "metadata": {"source": "wiki"}},
            {"page_content": "b", "id": 7, "score": 1},
            {"text": "c"},
        ]
    )
    assert [doc(attrs, i, "content") for i in range(3)] == ["a", "b", "c"]
    assert (doc(attrs, 0, "id"), doc(attrs, 1, "id"), doc(attrs, 2, "id")) == ("d1", "7", None)
    assert (doc(attrs, 0, "score"), doc(attrs, 1, "score")) == (0.9, 1.0)
    assert isinstance(doc(attrs, 1, "score"), float)
    assert json.loads(doc(attrs, 0, "metadata")) == {"source": "wiki"}


def test_langchain_documents_and_scored_pairs():
    docs = [Document("alpha", {"page": 1}, id="a"), Document("beta")]
    attrs = document_attributes(docs)
    assert (doc(attrs, 0, "content"), doc(attrs, 0, "id")) == ("alpha", "a")
    assert json.loads(doc(attrs, 0, "metadata")) == {"page": 1}
    assert doc(attrs, 1, "metadata") is None  # empty metadata is not written
    pairs = document_attributes([(Document("gamma"), 0.42), (Document("delta"), 0.4)])
    assert (doc(pairs, 0, "content"), doc(pairs, 0, "score")) == ("gamma", 0.42)
    texts = document_attributes([("plain text", 0.3), {"text": "t", "score": 0.1}])
    assert (doc(texts, 0, "content"), doc(texts, 0, "score")) == ("plain text", 0.3)


def test_llamaindex_nodes_with_score():
    attrs = document_attributes([NodeWithScore(TextNode("chunk one", "n1"), 0.8)])
    assert (doc(attrs, 0, "content"), doc(attrs, 0, "id"), doc(attrs, 0, "score")) == (
        "chunk one",
        "n1",
        0.8,
    )


@pytest.mark.parametrize(
    "result",
    [
        None,
        "text",
        b"bytes",
        {"content": "a dict is one document, not a list"},
        [],
        [1, 2, 3],
        [[1.0, 2.0]],
        [(1, 2)],
        42,
        iter(["a"]),
        [None],
    ],
)
def test_what_is_not_a_sequence_of_documents_writes_nothing(result):
    assert document_attributes(result) is None


def test_only_the_first_n_are_written_and_the_count_is_full():
    attrs = document_attributes([f"doc {i}" for i in range(100)], max_documents=5)
    assert attrs["tinyllm.retrieval.documents"] == 100
    assert doc(attrs, 4, "content") == "doc 4"
    assert doc(attrs, 5, "content") is None
    assert document_attributes([f"d{i}" for i in range(30)])["tinyllm.retrieval.documents"] == 30
    assert doc(document_attributes([f"d{i}" for i in range(30)]), 20, "content") is None


def test_contents_are_redacted_and_cut_before_they_are_scanned(monkeypatch):
    seen: list[int] = []
    policy = get_redaction_policy()
    original = policy.redact_text
    monkeypatch.setattr(policy, "redact_text", lambda t: seen.append(len(t)) or original(t))
    huge = "token: Bearer abcdefghijklmnop " + "lorem ipsum " * 1_000_000
    attrs = document_attributes([huge], content_bytes=200)
    content = doc(attrs, 0, "content")
    assert "abcdefghijklmnop" not in content and "Bearer [REDACTED]" in content
    assert len(content.encode()) <= 200 and content.endswith("...[truncated]")
    assert max(seen) <= 200 + SCAN_MARGIN


def test_metadata_is_redacted_json_within_its_budget():
    attrs = document_attributes(
        [{"content": "c", "metadata": {"api_key": "k", "blob": "x" * 10_000}}], metadata_bytes=256
    )
    text = doc(attrs, 0, "metadata")
    assert len(text.encode()) <= 256
    decoded = json.loads(text)
    assert decoded["api_key"] == "[REDACTED]"


def test_reranker_output_documents_prefix():
    attrs = document_attributes(["a"], prefix="reranker.output_documents")
    assert doc(attrs, 0, "content", "reranker.output_documents") == "a"


def test_a_document_that_cannot_be_read_is_left_out_and_counted():
    class Hostile:
        page_content = "looks like a document"

        @property
        def metadata(self):
            raise RuntimeError("boom")

    registry = get_metrics_collector().registry
    before = (
        registry.get_sample_value("tinyllm_instrumentation_errors_total", {"stage": "capture"})
        or 0.0
    )
    attrs = document_attributes([Document("fine"), Hostile(), Document("also fine")])
    assert doc(attrs, 0, "content") == "fine" and doc(attrs, 2, "content") == "also fine"
    assert doc(attrs, 1, "content") is None
    after = registry.get_sample_value("tinyllm_instrumentation_errors_total", {"stage": "capture"})
    assert after == before + 1


def test_non_string_content_is_serialised():
    attrs = document_attributes([{"content": {"title": "T", "password": "p"}}])
    assert json.loads(doc(attrs, 0, "content")) == {"title": "T", "password": "[REDACTED]"}
