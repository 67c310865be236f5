"""Which GenAI provider a call used, and that provider's name in each vocabulary.

A provider is known from ``@observe(provider=...)`` or from the package an SDK result comes from
(``type(result).__module__``): the kit never imports an SDK, so it works without any installed.
The canonical name is the GenAI conventions' ``gen_ai.provider.name`` value; OpenInference's
``llm.provider`` / ``llm.system`` and genai-prices' provider ids spell some of them differently.
"""

from __future__ import annotations

from typing import Any

from . import conventions as c

__all__ = [
    "SDK_PACKAGES",
    "prices_provider_id",
    "provider_attributes",
    "provider_of",
    "provider_of_type",
]

#: SDK package (first one or two parts of a type's module) -> ``gen_ai.provider.name`` value.
SDK_PACKAGES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google.genai": "gcp.gen_ai",
    "mistralai": "mistral_ai",
    "cohere": "cohere",
    "groq": "groq",
}

# gen_ai.provider.name -> OpenInference llm.provider, where the spelling differs.
_OPENINFERENCE_PROVIDER = {
    "gcp.gen_ai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "mistral_ai": "mistralai",
    "x_ai": "xai",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
}
# gen_ai.provider.name -> OpenInference llm.system (a closed list in OpenInference).
_OPENINFERENCE_SYSTEM = {
    "openai": "openai",
    "anthropic": "anthropic",
    "cohere": "cohere",
    "mistral_ai": "mistralai",
    "gcp.vertex_ai": "vertexai",
}
# gen_ai.provider.name -> genai-prices provider id, where the spelling differs.
_PRICES_PROVIDER = {
    "gcp.gen_ai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x_ai": "x-ai",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
}

# type -> provider name or None, decided once per type (bounded: types made on the fly must not
# grow it without end).
_BY_TYPE: dict[type, str | None] = {}
_MAX_TYPES = 1024


def provider_of(value: Any) -> str | None:
    """The ``gen_ai.provider.name`` of an SDK object, from the package its type comes from.

    Args:
        value: a call's result or a streamed item.

    Returns:
        ``"openai"``, ``"anthropic"``, ``"gcp.gen_ai"`` (google-genai), ``"mistral_ai"``,
        ``"cohere"`` or ``"groq"``; None for anything else (dicts, the app's own types).

    Example:
        >>> provider_of({"model": "gpt-4o"}) is None
        True
    """
    cls = type(value)
    try:
        return _BY_TYPE[cls]
    except KeyError:
        return provider_of_type(cls)


def provider_of_type(cls: type) -> str | None:
    """The provider of instances of ``cls`` (see `provider_of`); remembered per type."""
    try:
        return _BY_TYPE[cls]
    except KeyError:
        pass
    module = getattr(cls, "__module__", None)
    found = None
    if isinstance(module, str):
        parts = module.split(".")
        found = SDK_PACKAGES.get(parts[0]) or SDK_PACKAGES.get(".".join(parts[:2]))
    if len(_BY_TYPE) < _MAX_TYPES:
        _BY_TYPE[cls] = found
    return found


def provider_attributes(provider: str) -> dict[str, str]:
    """The provider attributes of both vocabularies for one provider name.

    ``gen_ai.provider.name`` and the deprecated ``gen_ai.system`` (Logfire reads it first) carry
    the name as given; OpenInference's ``llm.provider`` its spelling there (``gcp.gen_ai`` is
    ``google``), and ``llm.system`` only for the providers OpenInference lists.

    Args:
        provider: a ``gen_ai.provider.name`` value, or any name the user gave ``provider=``.

    Returns:
        A new dict of attributes.

    Example:
        >>> provider_attributes("mistral_ai")["llm.provider"]
        'mistralai'
    """
    attrs = {
        c.GEN_AI_PROVIDER_NAME: provider,
        c.GEN_AI_SYSTEM: provider,
        c.LLM_PROVIDER: _OPENINFERENCE_PROVIDER.get(provider, provider),
    }
    system = _OPENINFERENCE_SYSTEM.get(provider)
    if system is not None:
        attrs[c.LLM_SYSTEM] = system
    return attrs


def prices_provider_id(provider: str | None) -> str | None:
    """genai-prices' id for a provider name (None stays None: genai-prices then guesses).

    Example:
        >>> prices_provider_id("gcp.gen_ai")
        'google'
    """
    if provider is None:
        return None
    return _PRICES_PROVIDER.get(provider, provider)
