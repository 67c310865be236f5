"""The kit's resource: the attributes configured, hashing and comparing as the SDK's Resource."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource

from tinyllm_instrument.telemetry import configure_telemetry, reset_telemetry


@pytest.fixture(autouse=True)
def _clean():
    yield
    reset_telemetry()


def test_the_kits_resource_hashes_and_compares_as_an_sdk_resource_of_the_same_attributes():
    # The OTLP encoder groups spans by resource in a dict: a resource that hashed differently
    # from an equal one would split a batch into several resource groups.
    configure_telemetry(
        enable_tracing=True, exporter="none", service_name="svc", resource_attributes={"a": 1}
    )
    resource = trace.get_tracer_provider().resource  # type: ignore[attr-defined]
    plain = Resource(dict(resource.attributes), resource.schema_url)
    assert resource.attributes["service.name"] == "svc" and resource.attributes["a"] == 1
    assert resource == plain and hash(resource) == hash(plain)
    assert hash(resource) == hash(resource)  # computed once, then remembered
    configure_telemetry(enable_tracing=True, exporter="none", service_name="other")
    again = trace.get_tracer_provider().resource  # type: ignore[attr-defined]
    assert again.attributes["service.name"] == "other"
    assert hash(again) == hash(Resource(dict(again.attributes), again.schema_url))
    assert hash(again) != hash(resource)
