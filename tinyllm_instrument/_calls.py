"""One wrapper per kind of callable, each driving a per-call lifecycle (start, end, restore).

``observe`` and ``telemetry.traced`` differ only in what they do around a call, so each gives a
:class:`CallLifecycle` and :func:`wrap` builds the wrapper: the per-kind mechanics (when a stream
starts and ends, what is current between its items, closing, throwing, binding as a method) are
written here once.

Two shapes of wrapper, chosen when decorating:

* A plain function or coroutine function gets a function made from one template with the
  wrapped function's own parameters (:func:`_shell_factory`): a call passes its arguments on as
  it got them, costs its own frame and nothing more (observed recursion reaches about half the
  interpreter's limit, as plain recursion through any one decorator does), and binds as a method
  like any function. It runs with the user function's globals (:func:`_rehome`), so code that
  reads its caller's module from the frame above (``sys._getframe(1).f_globals``, warnings'
  ``module=`` filters and registry) sees the user's module; so it reads no global name at all.
* A generator or async generator function, or anything that is not a plain function (a callable
  object, a builtin), gets a ``wrapt.FunctionWrapper`` (:class:`_Proxy`): it answers
  ``inspect.isgeneratorfunction`` and friends for the wrapped function, binds as the wrapped
  object would, and checks the switch in C when it is off. The user's generator is created at the
  call, so bad arguments raise there; the call itself starts at the first step.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import weakref
from collections.abc import Callable
from types import FrameType, FunctionType
from typing import Any, NamedTuple, Protocol, SupportsIndex

import wrapt

__all__ = [
    "ALWAYS",
    "ASYNC",
    "ASYNC_GENERATOR",
    "GENERATOR",
    "SYNC",
    "CallLifecycle",
    "Gate",
    "call_in_frame",
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
      lifecycle keeps in context variables). ``args`` include a method's receiver. It returns the
      call's state, or None to run this call unobserved (the kit failed to start it, or the
      lifecycle is switched off).
    * ``end_ok(call, result)``: the call returned ``result`` (a stream: it was exhausted; the
      result is its return value). Ends the call and restores what ``start`` made current.
    * ``end_error(call, exc)``: the call raised ``exc``; the wrapper re-raises it afterwards.
    * ``end_closed(call)``: a stream was closed before its end (``close()``, ``aclose()``, or
      the garbage collector).
    * ``resume(call)``: a stream is about to run its next step: make it current again.
    * ``pause(call)``: a stream produced an item: restore what was current before ``resume``.
    * ``pause_item(call, item)``: the same, for a lifecycle whose ``sees_items`` is true: it is
      also handed the item (an LLM stream's chunks carry its token usage). Read once, when
      wrapping: a stream of a lifecycle that does not see items pays nothing per item for it.
    """

    __slots__ = ()

    #: Whether a stream's items are handed to :meth:`pause_item` (read once, by :func:`wrap`).
    sees_items: bool = False

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

    def pause_item(self, call: Any, item: Any) -> None:
        self.pause(call)


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
# Building a wrapper, and telling one
# --------------------------------------------------------------------------------------------

# Where a function wrapper keeps (a weak reference to itself, its lifecycle). The reference lets
# lifecycle_of tell the wrapper from a copy of its __dict__ (functools.wraps of an observed
# function copies it), which is not observed.
_MARK = "__tinyllm_lifecycle__"


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
        A function for a plain (async) function, else a ``wrapt.FunctionWrapper``; for a
        classmethod / staticmethod, one of those inside a new one.

    Example:
        >>> observed = wrap(f, MyLifecycle())
    """
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(wrap(func.__func__, lifecycle, gate, kind))
    if kind is None:
        kind = kind_of(func)
    if kind in (SYNC, ASYNC) and type(func) is FunctionType:
        shape = _shape_of(func)
        shell = _shell_factory(shape, kind)(func, gate, lifecycle, *_defaults(func, shape))
        wrapper = functools.update_wrapper(_rehome(shell, func), func)
        wrapper.__dict__[_MARK] = (weakref.ref(wrapper), lifecycle)
        return wrapper
    sees_items = kind in (GENERATOR, ASYNC_GENERATOR) and bool(lifecycle.sees_items)
    shell = _shell_factory(_WRAPT, kind, sees_items)(None, gate, lifecycle)
    proxy = _Proxy(func, shell, enabled=None if gate is ALWAYS else _switch(gate))
    proxy._self_lifecycle = lifecycle
    return proxy


def _switch(gate: Gate) -> Callable[[], bool]:
    """The gate as the callable wrapt asks (in C, before anything else) on each call."""

    def enabled() -> bool:
        return gate.enabled

    return enabled


def lifecycle_of(obj: Any) -> CallLifecycle | None:
    """The lifecycle of a wrapper made by :func:`wrap` (also inside a classmethod or
    staticmethod), or None for anything else, including a copy of one's attributes.
    """
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    if type(obj) is FunctionType:
        mark = obj.__dict__.get(_MARK)
        if type(mark) is tuple and len(mark) == 2 and mark[0]() is obj:
            lifecycle: CallLifecycle = mark[1]
            return lifecycle
        return None
    if isinstance(obj, _Proxy):  # a real instance: wrapt proxies forward __class__
        return getattr(obj, "_self_lifecycle", None)
    return None


def _rehome(shell: FunctionType, func: FunctionType) -> FunctionType:
    """The same closure, with the user function's globals (see the module docstring)."""
    rehomed = FunctionType(
        shell.__code__, func.__globals__, shell.__name__, shell.__defaults__, shell.__closure__
    )
    rehomed.__kwdefaults__ = shell.__kwdefaults__
    return rehomed


class _BoundProxy(wrapt.BoundFunctionWrapper):
    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        # As pickle does for a bound method: fetched again from its instance (or class).
        return getattr, (self._self_instance, self.__name__)


class _Proxy(wrapt.FunctionWrapper):
    """The wrapper of a generator, an async generator or a callable object."""

    _self_lifecycle: CallLifecycle  # wrapt keeps _self_* names on the proxy, not the wrapped

    # The annotation above gives this class an __annotations__ of its own, which hid the wrapped
    # callable's (that wrapt forwards): get_type_hints(observed) saw _self_lifecycle, and
    # LangGraph lost the input schema it reads from a generator node's first parameter.
    # Defined after every annotation of the class body, which would otherwise write into it.
    @property
    def __annotations__(self) -> Any:
        return self.__wrapped__.__annotations__

    @__annotations__.setter
    def __annotations__(self, value: Any) -> None:
        self.__wrapped__.__annotations__ = value

    # wrapt looks this up on every binding of a subclass (obj.method); absent, the lookup raises
    # and clears an AttributeError each time (~0.5 us).
    __bound_function_wrapper__ = _BoundProxy

    def __reduce_ex__(self, protocol: SupportsIndex) -> str:
        # Pickle by reference, as pickle does for a plain module-level function: the name resolves
        # to this same wrapper in its module, so multiprocessing pools can ship it.
        return str(self.__qualname__)

    def __repr__(self) -> str:
        return f"<observed {self.__wrapped__!r}>"


# --------------------------------------------------------------------------------------------
# The shells: one template, for every kind and both calling conventions. A shell reads no
# globals (see _rehome): every name it uses is a cell of its factory, prefixed so that it cannot
# meet a parameter's name.
# --------------------------------------------------------------------------------------------

_SHELL_TEMPLATE = """\
def factory(_tl_func, _tl_gate, _tl_lifecycle, {defaults}):
    _tl_start = _tl_lifecycle.start
    _tl_end_ok = _tl_lifecycle.end_ok
    _tl_end_error = _tl_lifecycle.end_error
    _tl_base = BaseException
    _tl_recursion = RecursionError
    _tl_driver = {driver}

    {async_}def observed({params}):
{body}
    return observed
"""
_CALL_BODY = """\
        if not _tl_gate.enabled:
            return {await_}{callee}({call})
        _tl_call = _tl_start({args}, {kwargs})
        if _tl_call is None:
            return {await_}{callee}({call})
        try:
            _tl_result = {await_}{callee}({call})
        except _tl_base as _tl_exc:
            try:
                _tl_end_error(_tl_call, _tl_exc)
            except _tl_recursion:  # at the interpreter's limit not even this call fits
                pass
            raise
        _tl_end_ok(_tl_call, _tl_result)
        return _tl_result"""
_STREAM_BODY = """\
        _tl_stream = {callee}({call})
        if not _tl_gate.enabled:
            return _tl_stream
        return _tl_driver(_tl_lifecycle, _tl_stream, {args}, {kwargs})"""
# The shells' file name. warnings.warn(stacklevel=N) and logging's stacklevel (and findCaller)
# pass over frames whose file name holds "importlib" and "_bootstrap" (CPython's own import
# frames), and over nothing else: a shell named so counts no level, so a warning or a log call
# inside an observed function is attributed to that function's caller, as without the kit.
_SHELL_FILENAME = "<tinyllm_instrument wrapper, passed over like importlib._bootstrap"
_PREFIX = "_tl_"


class _Shape(NamedTuple):
    """The parameters of a function, as its shell repeats them: the key of a compiled template."""

    posonly: tuple[str, ...] = ()
    positional: tuple[str, ...] = ()
    kwonly: tuple[str, ...] = ()
    var_args: str = "_tl_args"
    var_kwargs: str = "_tl_kwargs"
    n_defaults: int = 0  # of the positional parameters, the last ones
    kw_defaults: tuple[str, ...] = ()  # keyword-only parameters with a default


#: A function whose parameters the shell's own names could meet: all arguments passed on as given.
_ANY_ARGUMENTS = _Shape()
#: wrapt's calling convention: (wrapped, instance, args, kwargs), instance apart from args.
_WRAPT = _Shape(positional=("_tl_wrapped", "_tl_instance", "_tl_args", "_tl_kwargs"), var_args="")


def _shape_of(func: FunctionType) -> _Shape:
    """The parameters of ``func``, read from its code object (what a call must match)."""
    code = func.__code__
    names = code.co_varnames
    n_pos, n_posonly = code.co_argcount, code.co_posonlyargcount
    end_kwonly = n_pos + code.co_kwonlyargcount
    var_args = names[end_kwonly] if code.co_flags & inspect.CO_VARARGS else ""
    end = end_kwonly + bool(var_args)
    var_kwargs = names[end] if code.co_flags & inspect.CO_VARKEYWORDS else ""
    kwonly = names[n_pos:end_kwonly]
    if any(name.startswith(_PREFIX) for name in (*names[:end], var_kwargs)):
        return _ANY_ARGUMENTS
    kw_defaults = func.__kwdefaults__ or {}
    return _Shape(
        names[:n_posonly],
        names[n_posonly:n_pos],
        kwonly,
        var_args,
        var_kwargs,
        len(func.__defaults__ or ()),
        tuple(name for name in kwonly if name in kw_defaults),
    )


def _defaults(func: FunctionType, shape: _Shape) -> list[Any]:
    """The default values the shell's parameters take: the function's own objects."""
    if shape is _ANY_ARGUMENTS:
        return []
    kw_defaults = func.__kwdefaults__ or {}
    return [*(func.__defaults__ or ()), *(kw_defaults[name] for name in shape.kw_defaults)]


#: Compiled shell factories, by (shape, kind, sees_items). Shapes repeat a lot; past this many, a
#: shell is compiled for each wrapper and its lines are not kept for tracebacks, so that a
#: program with countless distinct signatures cannot grow memory (nor linecache) without bound.
_MAX_FACTORIES = 1024
_FACTORIES: dict[tuple[_Shape, str, bool], Callable[..., Any]] = {}


def _shell_factory(shape: _Shape, kind: str, sees_items: bool = False) -> Callable[..., Any]:
    """The compiled shell template for one parameter shape and kind (and stream driver)."""
    key = (shape, kind, sees_items)
    factory = _FACTORIES.get(key)
    if factory is None:
        keep = len(_FACTORIES) < _MAX_FACTORIES
        factory = _compile_shell(shape, kind, sees_items, keep)
        if keep:
            _FACTORIES[key] = factory
    return factory


def _compile_shell(
    shape: _Shape, kind: str, sees_items: bool, keep_lines: bool
) -> Callable[..., Any]:
    if shape is _WRAPT:
        params = list(shape.positional)
        defaults: list[str] = []
        callee, call = "_tl_wrapped", "*_tl_args, **_tl_kwargs"
        args = "_tl_args if _tl_instance is None else (_tl_instance, *_tl_args)"
        kwargs = "_tl_kwargs"
    else:
        params, defaults, call_items, packed, keywords = _parameter_lists(shape)
        callee, call = "_tl_func", ", ".join(call_items)
        args = "(" + "".join(f"{item}, " for item in packed) + ")"
        kwargs = "{" + ", ".join(keywords) + "}"
    is_async = kind == ASYNC
    streams = {GENERATOR: "_drive_generator", ASYNC_GENERATOR: "_drive_async_generator"}
    if sees_items:
        streams = {k: v + "_items" for k, v in streams.items()}
    body = (_STREAM_BODY if kind in streams else _CALL_BODY).format(
        await_="await " if is_async else "", callee=callee, call=call, args=args, kwargs=kwargs
    )
    source = _SHELL_TEMPLATE.format(
        defaults="".join(f"{name}, " for name in defaults),
        driver=streams.get(kind, "None"),
        async_="async " if is_async else "",
        params=", ".join(params),
        body=body,
    )
    namespace = dict(_DRIVERS)
    factory: Callable[..., Any] = _compile(
        source, f"{kind} ({', '.join(params)})", "factory", namespace, keep_lines
    )
    return factory


def _parameter_lists(shape: _Shape) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """For a shape: the shell's parameters, its default names, the call's arguments, the
    positional arguments and the keyword arguments (as dict items) handed to ``start``.
    """
    positional = (*shape.posonly, *shape.positional)
    first_default = len(positional) - shape.n_defaults
    params, defaults = [], []
    for index, name in enumerate(positional):
        if index >= first_default:
            defaults.append(f"_tl_d{index}")
            params.append(f"{name}=_tl_d{index}")
        else:
            params.append(name)
        if index == len(shape.posonly) - 1:
            params.append("/")
    if shape.var_args:
        params.append(f"*{shape.var_args}")
    elif shape.kwonly:
        params.append("*")
    for index, name in enumerate(shape.kwonly):
        if name in shape.kw_defaults:
            defaults.append(f"_tl_k{index}")
            params.append(f"{name}=_tl_k{index}")
        else:
            params.append(name)
    packed = [*positional, *([f"*{shape.var_args}"] if shape.var_args else [])]
    keywords = [f"{name!r}: {name}" for name in shape.kwonly]
    call = [*packed, *(f"{name}={name}" for name in shape.kwonly)]
    if shape.var_kwargs:
        params.append(f"**{shape.var_kwargs}")
        keywords.append(f"**{shape.var_kwargs}")
        call.append(f"**{shape.var_kwargs}")
    return params, defaults, call, packed, keywords


# --------------------------------------------------------------------------------------------
# The stream drivers: run the user's (async) generator as the call
# --------------------------------------------------------------------------------------------


# One template for both drivers: a generator's and an async generator's differ only in the
# spelling of each step (send / asend awaited, StopIteration / StopAsyncIteration, ...).
_DRIVER_TEMPLATE = """\
{async_}def drive(lifecycle, stream, args, kwargs):
    call = lifecycle.start(args, kwargs)
    if call is None:
        {passthrough}
    pause = lifecycle.{pause_method}
    resume = lifecycle.resume
    send = stream.{send}
    value = None
    thrown = None
    while True:  # start() or resume() made the call current
        try:
            if thrown is None:
                item = {await_}send(value)
            else:
                item, thrown = {await_}stream.{throw}(thrown), None
        except {stop} as stop:
            lifecycle.end_ok(call, {result})
            return{returned}
        except BaseException as exc:
            lifecycle.end_error(call, exc)
            raise
        pause({pause_args})
        try:
            value = yield item
        except GeneratorExit:  # closed before its end: close the user's stream as the call
            resume(call)
            try:
                {await_}stream.{close}()
            except BaseException as exc:
                lifecycle.end_error(call, exc)
                raise
            lifecycle.end_closed(call)
            raise
        except BaseException as exc:  # thrown in by the consumer: forwarded
            thrown, value = exc, None
        resume(call)
"""


#: How each step is spelled: (for a generator, for an async generator).
_DRIVER_SPELLING = {
    "async_": ("", "async "),
    "await_": ("", "await "),
    "passthrough": (
        "return (yield from stream)",
        "async for item in stream:\n            yield item\n        return",
    ),
    "send": ("send", "asend"),
    "throw": ("throw", "athrow"),
    "close": ("close", "aclose"),
    "stop": ("StopIteration", "StopAsyncIteration"),
    "result": ("stop.value", "None"),
    "returned": (" stop.value", ""),  # an async generator returns no value
}


def _compile_driver(is_async: bool, sees_items: bool) -> Callable[..., Any]:
    """The driver of a generator (or async generator): runs it as the call, current only while
    its own code runs, never across a yield. With ``sees_items``, each item is handed to the
    lifecycle's ``pause_item``; without, the driver has no per-item cost for it.
    """
    spelling = {key: pair[is_async] for key, pair in _DRIVER_SPELLING.items()}
    spelling["pause_method"] = "pause_item" if sees_items else "pause"
    spelling["pause_args"] = "call, item" if sees_items else "call"
    kind = ASYNC_GENERATOR if is_async else GENERATOR
    label = f"{kind} driver{' (items)' if sees_items else ''}"
    return _compile(_DRIVER_TEMPLATE.format(**spelling), label, "drive", {}, True)


def _compile(
    source: str, label: str, name: str, namespace: dict[str, Any], keep_lines: bool
) -> Any:
    """Compile one of the templates; with ``keep_lines``, tracebacks through it show its lines,
    as for a file.
    """
    filename = f"{_SHELL_FILENAME} {label}>"
    exec(compile(source, filename, "exec"), namespace)
    if keep_lines:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return namespace[name]


#: The four drivers, by the name the shells call them.
_DRIVERS: dict[str, Callable[..., Any]] = {
    "_drive_generator": _compile_driver(is_async=False, sees_items=False),
    "_drive_async_generator": _compile_driver(is_async=True, sees_items=False),
    "_drive_generator_items": _compile_driver(is_async=False, sees_items=True),
    "_drive_async_generator_items": _compile_driver(is_async=True, sees_items=True),
}
_DRIVER_CODES = frozenset(driver.__code__ for driver in _DRIVERS.values())


def call_in_frame(frame: FrameType) -> Any:
    """The call state a wrapper's frame holds (for walking a traceback); None for other frames."""
    code = frame.f_code
    if code in _DRIVER_CODES:
        return frame.f_locals.get("call")
    if code.co_filename.startswith(_SHELL_FILENAME):
        return frame.f_locals.get("_tl_call")
    return None
