"""Wrapping an LLM SDK's methods as observed calls: one kit ``llm`` / ``embedding`` node per call.

What the ``@openai`` and ``@anthropic`` presets share. A :class:`Method` names one method of an SDK
class (``openai.resources.embeddings:Embeddings.create``) and what its calls are; an
:class:`SDKPatcher` installs a ``wrapt.FunctionWrapper`` on each, when its module is imported (at
once if it is), and takes each off again, exactly.

A call
------
Each call is observed by the kit's own ``@observe(kind=..., model=..., provider=...)``: the model is
the call's ``model=`` argument, read per call (one observed template per model seen, cached, so the
request and token metrics carry it); the node is named after the SDK method
(``openai.chat.completions.create``). The HTTP request the SDK makes runs inside the call's span,
so an installed HTTP instrumentation's span is its child.

A stream
--------
A call that returns a stream (``stream=True``, or the stream a helper such as Anthropic's
``messages.stream()`` opens) is the same observed call, started before the request and ended when
the stream ends: read to its end, closed (``close()``, a ``with`` block), broken by an error, or
collected unread. The stream the SDK returned is handed back inside a ``wrapt.ObjectProxy`` that
behaves as it does; every item it yields is read for the model's usage, so the final usage chunk
counts, and whatever was read so far counts when it ends early.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import wrapt
from opentelemetry import trace

from .. import _config
from .._calls import CallLifecycle, lifecycle_of
from .._errors import Stage, report_internal_error
from .._observe_settings import SETTINGS
from ..genai import conventions as c
from ..genai.messages import output_message_attributes
from ..genai.payloads import bounded_text
from ..genai.streams import StreamAccumulator
from ..observe import observe, record_usage
from ._base import Report

__all__ = ["ENV_PRESET_CAPTURE", "Method", "SDKPatcher"]

_STATE = _config.STATE  # the kit's switch: off, a call is passed through as it was

#: "1": the presets capture each call's messages and the model's reply (as ``@observe``'s
#: ``capture_input`` / ``capture_output``); read when a preset is enabled. Default off.
ENV_PRESET_CAPTURE = _config.ENV_PREFIX + "PRESET_CAPTURE"

#: Models seen per method, each with its own observed template; past this many, a call's model
#: is the one its response names (the metrics' ``model`` label stays bounded).
_MAX_MODELS = 64
_MAX_MODEL_CHARS = 200


@dataclass(frozen=True)
class Method:
    """One SDK method a preset wraps.

    Attributes:
        module: the module that defines the class (``openai.resources.embeddings``).
        qualname: ``Class.method`` in it.
        node: the kit node name of its calls (``openai.embeddings.create``).
        kind: ``llm`` or ``embedding``.
        is_async: the method returns a coroutine (an ``Async*`` resource).
        streams: a call with ``stream=True`` returns a stream to be followed.
        opens_stream: the method returns a context manager that opens the stream when entered
            (Anthropic's ``messages.stream()``); ``manager_request`` names the manager's
            attribute holding the request it makes.
    """

    module: str
    qualname: str
    node: str
    kind: str
    is_async: bool = False
    streams: bool = False
    manager_request: str | None = None

    @property
    def label(self) -> str:
        return f"{self.module}:{self.qualname}"


class _Patch:
    __slots__ = ("owner", "attr", "original", "wrapper")

    def __init__(self, owner: Any, attr: str, original: Any, wrapper: Any) -> None:
        self.owner = owner
        self.attr = attr
        self.original = original
        self.wrapper = wrapper


class SDKPatcher:
    """Installs and removes the wrappers of one preset's methods.

    Args:
        provider: ``gen_ai.provider.name`` of every call (``openai``).
        methods: what to wrap.
        stream_types: returns the SDK's stream classes (sync, async), asked once the SDK is
            imported; a result of neither type is not followed (``with_raw_response``).
        skip: asked per call with the resource instance: True leaves the call alone (the SDK
            traces it itself).

    Example:
        >>> patcher = SDKPatcher("openai", METHODS, lambda: (openai.Stream, openai.AsyncStream))
        >>> patcher.install(print)
    """

    def __init__(
        self,
        provider: str,
        methods: Iterable[Method],
        stream_types: Callable[[], tuple[type, type]],
        skip: Callable[[Any], bool] | None = None,
    ) -> None:
        self.provider = provider
        self.methods = tuple(methods)
        self.stream_types = stream_types
        self.skip = skip
        self._lock = threading.RLock()
        self._patches: list[_Patch] = []
        self._generation = 0  # a hook registered by an earlier install does nothing
        self._active = False

    def install(self, report: Report) -> None:
        """Wrap every method now if its module is imported, else when it is."""
        capture = _config.env_bool(ENV_PRESET_CAPTURE, False)
        with self._lock:
            self._generation += 1
            self._active = True
            generation = self._generation
        by_module: dict[str, list[Method]] = {}
        for method in self.methods:
            by_module.setdefault(method.module, []).append(method)
        for module_name, methods in by_module.items():
            hook = self._hook(methods, generation, capture, report)
            if module_name in sys.modules:
                hook(sys.modules[module_name])
            else:
                wrapt.register_post_import_hook(hook, module_name)

    def uninstall(self) -> None:
        """Put every original back where it is still our wrapper; idempotent."""
        with self._lock:
            self._generation += 1
            self._active = False
            patches, self._patches = self._patches, []
        for patch in reversed(patches):
            try:
                if vars(patch.owner).get(patch.attr) is patch.wrapper:
                    setattr(patch.owner, patch.attr, patch.original)
            except Exception as exc:
                report_internal_error(Stage.UNINSTRUMENT, exc)

    def _hook(
        self, methods: list[Method], generation: int, capture: bool, report: Report
    ) -> Callable[[Any], None]:
        def hook(module: Any) -> None:
            with self._lock:
                if generation != self._generation:
                    return
                for method in methods:
                    try:
                        if self._patch(module, method, capture):
                            report(method.label)
                    except Exception as exc:  # one method we cannot wrap leaves the others
                        report_internal_error(Stage.INSTRUMENT, exc)

        return hook

    def _patch(self, module: Any, method: Method, capture: bool) -> bool:
        class_name, _, attr = method.qualname.rpartition(".")
        owner = getattr(module, class_name, None)
        original = vars(owner).get(attr) if isinstance(owner, type) else None
        if original is None:
            raise LookupError(f"{method.label} not found: the SDK changed its layout")
        if any(p.owner is owner and p.attr == attr for p in self._patches):
            return False
        call = _Calls(self, method, original, capture)
        wrapper = wrapt.FunctionWrapper(original, call.wrapper)
        setattr(owner, attr, wrapper)
        self._patches.append(_Patch(owner, attr, original, wrapper))
        return True

    def active(self) -> bool:
        return self._active


# --------------------------------------------------------------------------------------------
# One wrapped method: its observed templates, and what a call does
# --------------------------------------------------------------------------------------------


def _model_of(kwargs: dict[str, Any]) -> str | None:
    model = kwargs.get("model")
    if type(model) is str and 0 < len(model) <= _MAX_MODEL_CHARS:
        return model
    return None


class _Calls:
    """The calls of one wrapped method: the wrapt wrapper and its observed templates."""

    def __init__(self, patcher: SDKPatcher, method: Method, original: Any, capture: bool) -> None:
        self.patcher = patcher
        self.method = method
        self.original = original
        self.capture = capture
        # (model, streaming) -> the observed template; None: the model named by the response.
        self._observed: dict[tuple[str | None, bool], Any] = {}
        self._lock = threading.Lock()
        self._types: tuple[type, type] | None = None

    # -- templates --------------------------------------------------------------------------

    def observed(self, model: str | None, streaming: bool) -> Any:
        """The observed template for calls of ``model``; made on first use."""
        key = (model, streaming)
        found = self._observed.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._observed.get(key)
            if found is None:
                if model is not None and len(self._observed) >= _MAX_MODELS:
                    return self.observed(None, streaming)
                found = self._observed[key] = self._make(model, streaming)
        return found

    def _make(self, model: str | None, streaming: bool) -> Any:
        original = self.original
        if self.method.is_async and not streaming:

            async def template(self: Any, *args: Any, **kwargs: Any) -> Any:
                return await original(self, *args, **kwargs)

        else:

            def template(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                return original(self, *args, **kwargs)

        # Its arguments bind to the SDK method's own signature (captured by parameter name, the
        # resource instance left out), and code.* name the SDK method.
        template.__wrapped__ = original  # type: ignore[attr-defined]
        template.__qualname__ = self.method.qualname
        template.__name__ = self.method.qualname.rpartition(".")[2]
        template.__module__ = self.method.module
        attributes = {c.GEN_AI_REQUEST_STREAM: True} if streaming else None
        return observe(
            node=self.method.node,
            kind=self.method.kind,
            model=model,
            provider=self.patcher.provider,
            capture_input=self.capture,
            # A stream's reply is gathered from its items (see _StreamCall), not its result.
            capture_output=self.capture and not streaming,
            attributes=attributes,
        )(template)

    def stream_types(self) -> tuple[type, type]:
        types = self._types
        if types is None:
            types = self._types = self.patcher.stream_types()
        return types

    # -- the wrapper ------------------------------------------------------------------------

    def wrapper(self, wrapped: Any, instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        """Every call of the SDK method: observed, or passed through as it was."""
        patcher = self.patcher
        if instance is None or not patcher._active or not _STATE.enabled:
            return wrapped(*args, **kwargs)
        try:
            skip = patcher.skip is not None and patcher.skip(instance)
            model = _model_of(kwargs)
            method = self.method
            if method.manager_request is not None:
                return self._manager(wrapped, instance, args, kwargs, model)
            streaming = method.streams and kwargs.get("stream") is True
            observed = None if skip else self.observed(model, streaming)
        except Exception as exc:  # the kit's failure: the call runs unobserved
            report_internal_error(Stage.OBSERVE_BEGIN, exc)
            return wrapped(*args, **kwargs)
        if observed is None:
            return wrapped(*args, **kwargs)
        if not streaming:
            return observed(instance, *args, **kwargs)
        lifecycle = lifecycle_of(observed)
        if lifecycle is None:  # pragma: no cover - observe() always gives one
            return wrapped(*args, **kwargs)
        opener = _Opener(self, lifecycle, (instance, *args), kwargs)
        if self.method.is_async:
            return opener.aopen(lambda: wrapped(*args, **kwargs))
        return opener.open(lambda: wrapped(*args, **kwargs))

    def _manager(
        self, wrapped: Any, instance: Any, args: tuple, kwargs: dict[str, Any], model: str | None
    ) -> Any:
        """A method returning a stream manager: the request it makes when entered is the call."""
        manager = wrapped(*args, **kwargs)
        attr = self.method.manager_request
        assert attr is not None
        if self.patcher.skip is not None and self.patcher.skip(instance):
            return manager
        request = vars(manager).get(attr) if hasattr(manager, "__dict__") else None
        if request is None:
            raise LookupError(f"{self.method.label}: the stream manager has no {attr}")
        lifecycle = lifecycle_of(self.observed(model, True))
        if lifecycle is None:  # pragma: no cover - observe() always gives one
            return manager
        opener = _Opener(self, lifecycle, (instance, *args), kwargs)
        if self.method.is_async:  # the manager awaits its request once, when entered

            async def entered() -> Any:
                return await opener.aopen(lambda: request)

            setattr(manager, attr, entered())
            # An async manager never entered leaves its request un-awaited, as without the kit;
            # ours is closed with it so that it adds no second "never awaited" warning.
            _close_with(manager, getattr(manager, attr))
        else:
            setattr(manager, attr, lambda: opener.open(request))
        return manager


def _close_with(owner: Any, coroutine: Any) -> None:
    try:
        weakref.finalize(owner, coroutine.close)
    except TypeError:  # not weakly referenceable: the warning it may give is Python's own
        pass


class _Opener:
    """Starts one streaming call, makes its request inside it, and hands back the stream."""

    __slots__ = ("calls", "lifecycle", "args", "kwargs")

    def __init__(
        self, calls: _Calls, lifecycle: CallLifecycle, args: tuple, kwargs: dict[str, Any]
    ) -> None:
        self.calls = calls
        self.lifecycle = lifecycle
        self.args = args
        self.kwargs = kwargs

    def open(self, request: Callable[[], Any]) -> Any:
        lifecycle = self.lifecycle
        call = lifecycle.start(self.args, self.kwargs)
        if call is None:
            return request()
        try:
            result = request()
        except BaseException as exc:
            lifecycle.end_error(call, exc)
            raise
        return self._follow(call, result, self.calls.stream_types()[0], _StreamProxy)

    async def aopen(self, request: Callable[[], Any]) -> Any:
        lifecycle = self.lifecycle
        call = lifecycle.start(self.args, self.kwargs)
        if call is None:
            return await request()
        try:
            result = await request()
        except BaseException as exc:
            lifecycle.end_error(call, exc)
            raise
        return self._follow(call, result, self.calls.stream_types()[1], _AsyncStreamProxy)

    def _follow(self, call: Any, result: Any, stream_type: type, proxy: type) -> Any:
        lifecycle = self.lifecycle
        if not isinstance(result, stream_type):  # a raw response: the call ends with it
            lifecycle.end_ok(call, result)
            return result
        tracked = _StreamCall(lifecycle, call, self.calls.capture)
        lifecycle.pause(call)  # the stream is read outside the call's context, as any result
        return proxy(result, tracked)


class _StreamCall:
    """One stream's call: its items read, ended once however the stream ends."""

    __slots__ = ("lifecycle", "call", "acc", "start_ns", "first_ns", "items", "done", "lock")

    def __init__(self, lifecycle: CallLifecycle, call: Any, capture: bool) -> None:
        self.lifecycle = lifecycle
        self.call = call
        self.acc = StreamAccumulator(capture_text=capture, text_bytes=SETTINGS.capture_bytes)
        self.start_ns = time.time_ns()
        self.first_ns = 0
        self.items = 0
        self.done = False
        self.lock = threading.Lock()

    def item(self, item: Any) -> None:
        if not self.first_ns:
            self.first_ns = time.time_ns()
        self.items += 1
        self.acc.add(item)

    def end(self, how: str, exc: BaseException | None = None) -> None:
        """The stream ended (``done``, ``closed``, ``failed``, ``collected``); never raises."""
        with self.lock:
            if self.done:
                return
            self.done = True
        lifecycle, call = self.lifecycle, self.call
        try:
            lifecycle.resume(call)
        except Exception as kit_exc:  # pragma: no cover - resume reports its own
            report_internal_error(Stage.OBSERVE_FINISH, kit_exc)
            return
        result = None
        try:
            result = self.acc.result()
            self._annotate(how)
            if exc is not None and result is not None and result.has_usage:
                # An error ends the call without reading a result: what the stream said so far
                # is told the way a call tells its own usage.
                record_usage(result.input_tokens or 0, result.output_tokens or 0)
        except Exception as kit_exc:
            report_internal_error(Stage.OBSERVE_FINISH, kit_exc)
        if exc is None:
            lifecycle.end_ok(call, result)
        else:
            lifecycle.end_error(call, exc)

    def _annotate(self, how: str) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attrs: dict[str, Any] = {"tinyllm.stream.items": self.items}
        if how in ("closed", "collected"):
            attrs["tinyllm.stream.ended"] = how
        if self.first_ns:
            attrs[c.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (self.first_ns - self.start_ns) / 1e9
        text = self.acc.text
        if text is not None:
            budget = SETTINGS.capture_bytes
            attrs[c.OUTPUT_VALUE] = bounded_text(text, budget)
            attrs[c.OUTPUT_MIME_TYPE] = c.MIME_TEXT
            attrs.update(output_message_attributes(text=text, content_bytes=budget))
        span.set_attributes(attrs)


class _StreamProxy(wrapt.ObjectProxy):
    """The SDK's stream, as it is, whose items are read and whose end ends the call."""

    def __init__(self, stream: Any, tracked: _StreamCall) -> None:
        super().__init__(stream)
        self._self_tracked = tracked

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        tracked = self._self_tracked
        try:
            item = self.__wrapped__.__next__()
        except StopIteration:
            tracked.end("done")
            raise
        except BaseException as exc:
            tracked.end("failed", exc)
            raise
        try:
            tracked.item(item)
        except Exception as kit_exc:  # pragma: no cover - the accumulator reports its own
            report_internal_error(Stage.USAGE, kit_exc)
        return item

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_tracked.end("closed")

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_tracked.end("closed")

    def __del__(self) -> None:
        tracked = getattr(self, "_self_tracked", None)
        if tracked is not None and not tracked.done:
            tracked.end("collected")

    def __reduce_ex__(self, protocol: Any) -> Any:  # a stream is not picklable; neither is this
        raise TypeError(f"cannot pickle {type(self.__wrapped__).__name__}")


class _AsyncStreamProxy(wrapt.ObjectProxy):
    """The SDK's async stream, as it is, whose items are read and whose end ends the call."""

    def __init__(self, stream: Any, tracked: _StreamCall) -> None:
        super().__init__(stream)
        self._self_tracked = tracked

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        tracked = self._self_tracked
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            tracked.end("done")
            raise
        except BaseException as exc:
            tracked.end("failed", exc)
            raise
        try:
            tracked.item(item)
        except Exception as kit_exc:  # pragma: no cover - the accumulator reports its own
            report_internal_error(Stage.USAGE, kit_exc)
        return item

    async def __aenter__(self) -> Any:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_tracked.end("closed")

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_tracked.end("closed")

    def __del__(self) -> None:
        tracked = getattr(self, "_self_tracked", None)
        if tracked is not None and not tracked.done:
            tracked.end("collected")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(f"cannot pickle {type(self.__wrapped__).__name__}")
