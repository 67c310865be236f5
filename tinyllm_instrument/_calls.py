"""One wrapper per kind of callable, each driving a per-call lifecycle (start, end, restore).

``observe`` and ``telemetry.traced`` differ only in what they do around a call, so each gives a
:class:`CallLifecycle` and :func:`wrap` builds the wrapper: the per-kind mechanics (when a stream
starts and ends, what is current between its items, closing, throwing, binding as a method) are
written here once.

The wrapper of a plain function is a closure (``functools.wraps``), not a proxy object: called
from Python bytecode it costs its own frame and nothing more, so an observed recursion reaches
about half the interpreter's limit, as plain recursion through one decorator does. Generators,
async generators and objects that are not functions get a :class:`FunctionLike` instead: it calls
the user's function at once (bad arguments raise at the call, as without the kit) and still
answers ``inspect.isgeneratorfunction`` truly, which a closure returning a generator cannot.

The closures run with the user function's globals (:func:`_rehome`), so that code which reads
its caller's module from the frame above (``sys._getframe(1).f_globals["__name__"]``, warnings'
``module=`` filters and registry) sees the user's module, not the kit's. Their code therefore
reads no global name at all: everything comes from the enclosing function's cells.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from types import CodeType, FunctionType, MethodType
from typing import Any, Protocol

__all__ = [
    "ALWAYS",
    "ASYNC",
    "ASYNC_GENERATOR",
    "GENERATOR",
    "SYNC",
    "CallLifecycle",
    "FunctionLike",
    "Gate",
    "is_wrapper_frame",
    "kind_of",
    "lifecycle_of",
    "wrap",
]

SYNC, ASYNC, GENERATOR, ASYNC_GENERATOR = "sync", "async", "generator", "async_generator"


class Gate(Protocol):
    """Anything with an ``enabled`` attribute, read per call (observe's is ``_config.STATE``)."""

    enabled: bool


class _Always:
    __slots__ = ()
    enabled = True


#: The gate of a wrapper that is never switched off (``traced``).
ALWAYS: Gate = _Always()


class CallLifecycle:
    """What a wrapper does around each call; subclasses say what "start" and "end" mean.

    The wrappers call these methods and nothing else. None of them may raise: a failure inside is
    the kit's own, to be reported and counted, and the user's call goes on as if unobserved.

    * ``start(args, kwargs)`` begins a call and makes it current (its span, and whatever else the
      lifecycle keeps in context variables). It returns the call's state, or None to run this
      call unobserved (the kit failed to start it, or the lifecycle is switched off).
    * ``end_ok(call, result)``: the call returned ``result`` (a stream: it was exhausted; the
      result is its return value). Ends the call and restores what ``start`` made current.
    * ``end_error(call, exc)``: the call raised ``exc``; the wrapper re-raises it afterwards.
    * ``end_closed(call)``: a stream was closed before its end (``close()``, ``aclose()``, or
      the garbage collector).
    * ``resume(call)``: a stream is about to run its next step: make it current again.
    * ``pause(call)``: a stream produced an item: restore what was current before ``resume``.
    """

    __slots__ = ()

    def start(self, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError

    def end_ok(self, call: Any, result: Any) -> None:
        raise NotImplementedError

    def end_error(self, call: Any, exc: BaseException) -> None:
        raise NotImplementedError

    def end_closed(self, call: Any) -> None:
        raise NotImplementedError

    def resume(self, call: Any) -> None:
        raise NotImplementedError

    def pause(self, call: Any) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# What kind of callable
# --------------------------------------------------------------------------------------------


def kind_of(func: Any) -> str:
    """SYNC, ASYNC, GENERATOR or ASYNC_GENERATOR: how calls of ``func`` return.

    Looks through classmethod, staticmethod and bound methods, and at ``type(obj).__call__`` of a
    callable object.

    Example:
        >>> async def f(): ...
        >>> kind_of(f)
        'async'
    """
    target = getattr(func, "__func__", func)
    for candidate in (target, _call_method(target)):
        if candidate is None:
            continue
        if inspect.isasyncgenfunction(candidate):
            return ASYNC_GENERATOR
        if inspect.iscoroutinefunction(candidate):
            return ASYNC
        if inspect.isgeneratorfunction(candidate):
            return GENERATOR
    return SYNC


def _call_method(target: Any) -> Any:
    """``type(obj).__call__`` of a callable object, which decides its kind; None otherwise."""
    if inspect.isroutine(target) or isinstance(target, type):
        return None
    return getattr(type(target), "__call__", None)  # noqa: B004 - the method itself is wanted


# --------------------------------------------------------------------------------------------
# Building a wrapper
# --------------------------------------------------------------------------------------------

# wrapper (closure or FunctionLike) -> its lifecycle. Weak: a wrapper the app drops goes away.
# Kept beside the wrappers rather than on them, so functools.wraps of an observed function (which
# copies its __dict__) does not make the copy look observed.
_LIFECYCLES: weakref.WeakKeyDictionary[Any, CallLifecycle] = weakref.WeakKeyDictionary()


def wrap(func: Any, lifecycle: CallLifecycle, gate: Gate = ALWAYS, kind: str | None = None) -> Any:
    """Wrap ``func`` so that each call runs through ``lifecycle`` while ``gate.enabled``.

    classmethod and staticmethod objects are unwrapped, their function wrapped, and rewrapped, so
    the result binds exactly as the original did whichever side of them the decorator sits.

    Args:
        func: a function, coroutine function, generator or async generator function, callable
            object, or a classmethod / staticmethod of one.
        lifecycle: what happens around each call.
        gate: when ``gate.enabled`` is false a call is a plain pass-through.
        kind: the callable kind if already known (see :func:`kind_of`).

    Returns:
        A function for a plain (async) function, else a :class:`FunctionLike`; for a
        classmethod / staticmethod, one of those around the wrapper.

    Example:
        >>> observed = wrap(f, MyLifecycle())
    """
    if isinstance(func, (classmethod, staticmethod)):
        inner = wrap(func.__func__, lifecycle, gate, kind)
        return type(func)(inner)
    if kind is None:
        kind = kind_of(func)
    shell = _SHELLS[kind](func, lifecycle, gate)
    wrapper: Any
    if kind in (SYNC, ASYNC) and type(func) is FunctionType:
        wrapper = functools.update_wrapper(_rehome(shell, func), func)
    else:
        wrapper = FunctionLike(func, shell)
    _LIFECYCLES[wrapper] = lifecycle
    return wrapper


def lifecycle_of(obj: Any) -> CallLifecycle | None:
    """The lifecycle of a wrapper made by :func:`wrap` (also inside a classmethod or
    staticmethod), or None for anything else.
    """
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    try:
        return _LIFECYCLES.get(obj)
    except TypeError:  # unhashable or not weak-referenceable: not one of ours
        return None


def _rehome(shell: FunctionType, func: FunctionType) -> FunctionType:
    """The same closure, with the user function's globals (see the module docstring)."""
    return FunctionType(
        shell.__code__, func.__globals__, shell.__name__, shell.__defaults__, shell.__closure__
    )


class FunctionLike:
    """A wrapper that is an object, not a function, yet looks and binds like the wrapped one.

    ``inspect`` takes an object with ``__code__``, ``__name__``, ``__defaults__`` and
    ``__kwdefaults__`` for a function, so ``isgeneratorfunction`` and friends answer for the
    wrapped function; ``inspect.signature`` follows ``__wrapped__``. As a class attribute it binds
    like the wrapped callable: a function (or any other descriptor) gets the instance as its
    first argument, a callable object without ``__get__`` does not.
    """

    __slots__ = ("__wrapped__", "_call", "_binds", "__dict__", "__weakref__")

    def __init__(self, wrapped: Any, call: Callable[..., Any]) -> None:
        functools.update_wrapper(self, wrapped, updated=())
        if isinstance(wrapped, FunctionType):
            self.__dict__.update(wrapped.__dict__)
            self.__code__: CodeType = wrapped.__code__
            self.__defaults__ = wrapped.__defaults__
            self.__kwdefaults__ = wrapped.__kwdefaults__
        self.__wrapped__ = wrapped
        self._call = call
        self._binds = hasattr(type(wrapped), "__get__")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None or not self._binds:
            return self
        return MethodType(self, instance)

    def __getattr__(self, name: str) -> Any:
        # Attributes of a wrapped callable object (its state, its methods) stay reachable.
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __reduce_ex__(self, protocol: Any) -> str:
        # Pickle by reference, as pickle does for a plain module-level function: the name resolves
        # to this same wrapper in its module, so multiprocessing pools can ship it.
        return str(self.__qualname__)

    def __repr__(self) -> str:
        return f"<observed {self.__wrapped__!r}>"


# --------------------------------------------------------------------------------------------
# The shells: one per kind. They read no globals (see _rehome): every name is a cell.
# --------------------------------------------------------------------------------------------


def _sync_shell(func: Any, lifecycle: CallLifecycle, gate: Gate) -> Any:
    start = lifecycle.start
    end_ok = lifecycle.end_ok
    end_error = lifecycle.end_error
    base_exception = BaseException
    recursion_error = RecursionError

    def observed(*args: Any, **kwargs: Any) -> Any:
        if not gate.enabled:
            return func(*args, **kwargs)
        call = start(args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except base_exception as exc:
            try:
                end_error(call, exc)
            except recursion_error:  # at the interpreter's limit not even the call fits
                pass
            raise
        end_ok(call, result)
        return result

    return observed


def _async_shell(func: Any, lifecycle: CallLifecycle, gate: Gate) -> Any:
    # A coroutine resumes in the Context it started in, so what start() made current is restored
    # in that same Context, whatever runs between its awaits.
    start = lifecycle.start
    end_ok = lifecycle.end_ok
    end_error = lifecycle.end_error
    base_exception = BaseException
    recursion_error = RecursionError

    async def observed(*args: Any, **kwargs: Any) -> Any:
        if not gate.enabled:
            return await func(*args, **kwargs)
        call = start(args, kwargs)
        if call is None:
            return await func(*args, **kwargs)
        try:
            result = await func(*args, **kwargs)
        except base_exception as exc:
            try:
                end_error(call, exc)
            except recursion_error:  # at the interpreter's limit not even the call fits
                pass
            raise
        end_ok(call, result)
        return result

    return observed


def _stream_shell(driver: Callable[..., Any]) -> Callable[[Any, CallLifecycle, Gate], Any]:
    """The shell of a generator or async generator function, around its ``driver``."""

    def shell(func: Any, lifecycle: CallLifecycle, gate: Gate) -> Any:
        # The user's generator is created at the call, so bad arguments raise there; the call
        # itself starts at the first step, when the generator's code first runs.
        def observed(*args: Any, **kwargs: Any) -> Any:
            if not gate.enabled:
                return func(*args, **kwargs)
            try:
                stream = func(*args, **kwargs)
            except BaseException as exc:
                _failed_at_call(lifecycle, args, kwargs, exc)
                raise
            return driver(lifecycle, stream, args, kwargs)

        return observed

    return shell


def _failed_at_call(
    lifecycle: CallLifecycle, args: tuple, kwargs: dict, exc: BaseException
) -> None:
    """A stream whose call raised (bad arguments): a call that started and failed at once."""
    call = lifecycle.start(args, kwargs)
    if call is not None:
        lifecycle.end_error(call, exc)


def _drive_generator(lifecycle: CallLifecycle, gen: Any, args: tuple, kwargs: dict) -> Any:
    """Run ``gen`` as the call: current only while its own code runs, never across a yield."""
    call = lifecycle.start(args, kwargs)
    if call is None:
        return (yield from gen)
    pause = lifecycle.pause
    resume = lifecycle.resume
    send = gen.send
    value: Any = None
    thrown: BaseException | None = None
    while True:  # start() or resume() made the call current
        try:
            if thrown is None:
                item = send(value)
            else:
                item, thrown = gen.throw(thrown), None
        except StopIteration as stop:
            lifecycle.end_ok(call, stop.value)
            return stop.value
        except BaseException as exc:
            lifecycle.end_error(call, exc)
            raise
        pause(call)
        try:
            value = yield item
        except GeneratorExit:
            resume(call)
            try:
                gen.close()
            except BaseException as exc:
                lifecycle.end_error(call, exc)
                raise
            lifecycle.end_closed(call)
            raise
        except BaseException as exc:  # forwarded by throw()
            thrown, value = exc, None
        resume(call)


async def _drive_async_generator(
    lifecycle: CallLifecycle, agen: Any, args: tuple, kwargs: dict
) -> Any:
    """The async twin of :func:`_drive_generator`."""
    call = lifecycle.start(args, kwargs)
    if call is None:
        async for item in agen:
            yield item
        return
    pause = lifecycle.pause
    resume = lifecycle.resume
    asend = agen.asend
    value: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            if thrown is None:
                item = await asend(value)
            else:
                item, thrown = await agen.athrow(thrown), None
        except StopAsyncIteration:
            lifecycle.end_ok(call, None)
            return
        except BaseException as exc:
            lifecycle.end_error(call, exc)
            raise
        pause(call)
        try:
            value = yield item
        except GeneratorExit:
            resume(call)
            try:
                await agen.aclose()
            except BaseException as exc:
                lifecycle.end_error(call, exc)
                raise
            lifecycle.end_closed(call)
            raise
        except BaseException as exc:  # forwarded by athrow()
            thrown, value = exc, None
        resume(call)


_SHELLS: dict[str, Callable[[Any, CallLifecycle, Gate], Any]] = {
    SYNC: _sync_shell,
    ASYNC: _async_shell,
    GENERATOR: _stream_shell(_drive_generator),
    ASYNC_GENERATOR: _stream_shell(_drive_async_generator),
}

# The code objects of the frames a wrapped call runs in, whichever wrapper made it.
_WRAPPER_CODES = frozenset(
    {
        _sync_shell(None, CallLifecycle(), ALWAYS).__code__,
        _async_shell(None, CallLifecycle(), ALWAYS).__code__,
        _drive_generator.__code__,
        _drive_async_generator.__code__,
    }
)


def is_wrapper_frame(code: CodeType) -> bool:
    """Whether a frame running ``code`` is a wrapper's own (for walking a traceback)."""
    return code in _WRAPPER_CODES
