"""The Jinja sandbox of name templates, with a bound on every value a template can build.

Name templates come from rule files; their values from records. Whatever both hold, rendering
must not take gigabytes or minutes before the name checks can refuse the result. So every step
a template can take is known and bounded:

- calls: only the methods of ``_METHODS`` (str, list, tuple, dict and number methods that read,
  or build a bounded value); anything else, ``list.append`` and ``int.to_bytes`` included, is
  refused. ``str.format`` and ``format_map`` go through a formatter that bounds every field;
- operators: all seven binary operators are intercepted (``*``, ``%``, ``+``, ``**``, ...);
- filters: every filter is wrapped; the ones that can build more than their input (``center``,
  ``indent``, ``wordwrap``, ``format``, ``join``, ``batch``, ...) have a size function.

The size of a result is computed from the inputs before it is built, and refused over
``MAX_BUILT`` characters (containers count the characters of their items). Then the size of
every result is measured (a backstop for a computed size that was too low, and for values that
grow by a small factor, like ``upper``), and every step checks the render's deadline.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import time
import types
from collections.abc import Callable, Collection, Iterator, Mapping
from string import Formatter
from typing import Any

from jinja2 import StrictUndefined, Undefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from .sizes import (
    MAX_BITS,
    MAX_BUILT,
    BoundedEscapeFormatter,
    BoundedFormatter,
    joined_size,
    need,
    number,
    percent_size,
    replaced_size,
    size_of,
    take,
    too_big,
)

#: how long one render may take, checked at every step: a backstop, a name takes microseconds
MAX_SECONDS = 2.0


# --- methods a template may call: name -> size of the result before the call (None: small or
# no larger than the object, measured after the call)

Args = tuple[Any, ...]
Kwargs = dict[str, Any]
SizeOf = Callable[[Any, Args, Kwargs], int]


def _arg(args: Args, kwargs: Kwargs, index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _padded(text: Any, args: Args, kwargs: Kwargs) -> int:
    return max(len(text), number(_arg(args, kwargs, 0, "width", 0)))


def _expanded(text: Any, args: Args, kwargs: Kwargs) -> int:
    return len(text) + text.count("\t") * max(number(_arg(args, kwargs, 0, "tabsize", 8)), 0)


def _replaced(text: Any, args: Args, kwargs: Kwargs) -> int:
    return replaced_size(text, _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new"),
                         _arg(args, kwargs, 2, "count", -1))  # fmt: skip


def _joined(separator: Any, args: Args, kwargs: Kwargs) -> int:
    return joined_size(len(separator), args[0])


def _call_text(what: str, args: Args) -> str:
    """``str.ljust(999999999)``, shortened."""
    text = ", ".join(repr(arg) if size_of(arg, 40) <= 40 else "..." for arg in args)
    return f"{what[:-1]}{text})"


def _same(value: Any, args: Args, kwargs: Kwargs) -> int:
    return size_of(value)


_READ = (  # the result is a part of the string, or a number, or a bool
    "startswith", "endswith", "find", "rfind", "index", "rindex", "count", "isalnum", "isalpha", "isascii",
    "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
    "strip", "lstrip", "rstrip", "removeprefix", "removesuffix",
)
_SAME = (  # the result is about as long as the string
    "capitalize", "casefold", "lower", "upper", "swapcase", "title", "split", "rsplit", "splitlines", "partition",
    "rpartition",
)
_STR_METHODS: dict[str, SizeOf | None] = {
    **dict.fromkeys(_READ),
    **dict.fromkeys(_SAME, _same),
    **dict.fromkeys(("center", "ljust", "rjust", "zfill"), _padded),
    "expandtabs": _expanded,
    "replace": _replaced,
    # "join" is handled apart: its argument may be an iterator, consumed once
}
_METHODS: tuple[tuple[type | tuple[type, ...], dict[str, SizeOf | None]], ...] = (
    (str, _STR_METHODS),
    ((list, tuple), {"index": None, "count": None, "copy": _same}),
    (dict, {"get": None, "keys": None, "values": None, "items": None, "copy": _same}),
    (int, {"bit_length": None, "bit_count": None}),
    (float, {"is_integer": None}),
)


def _method(obj: Any) -> tuple[Any, str, SizeOf | None]:
    """The object and name of a method a template may call, and its size function; else refused."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if isinstance(obj, types.BuiltinMethodType | types.MethodType) and not isinstance(owner, type):
        for kinds, methods in _METHODS:
            if isinstance(owner, kinds) and (name in methods or (name == "join" and kinds is str)):
                return owner, name, methods.get(name)
        raise SecurityError(f"{type(owner).__name__}.{name}() is not available in name templates")
    raise SecurityError(f"calling a {type(obj).__name__} is not available in name templates")


class _BoundedFormat:
    """``text.format`` or ``text.format_map`` as a template sees it."""

    def __init__(self, env: BoundedSandbox, text: str, mapping: bool) -> None:
        self.env, self.text, self.mapping = env, text, mapping

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        if self.mapping:
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            args, kwargs = (), args[0]
        if isinstance(self.text, Markup):
            formatter: Formatter = BoundedEscapeFormatter(self.env, escape=self.text.escape)
        else:
            formatter = BoundedFormatter(self.env)
        return type(self.text)(formatter.vformat(self.text, args, kwargs))


# --- filters: the size of the result of those that can build more than their input

_Arguments = dict[str, Any]


def _filled(count: str) -> Callable[[_Arguments], int]:
    def size(a: _Arguments) -> int:
        n = number(a[count])
        need(n, f"{count} {n}")
        return size_of(a["value"]) + (n * (size_of(a["fill_with"]) + 2) if a["fill_with"] is not None else 0)

    return size


def _indented(a: _Arguments) -> int:
    width = a["width"]
    pad = len(width) if isinstance(width, str) else number(width)
    need(pad, f"indent({pad})")
    size = size_of(a["value"])
    need(size, "indent")
    return size + (str(a["value"]).count("\n") + 2) * pad


def _wrapped(a: _Arguments) -> int:
    size = size_of(a["value"])
    return size + (size + 1) * len(str(a["wrapstring"] if a["wrapstring"] is not None else "\n"))


def _count(value: Any) -> int:
    return len(value) if isinstance(value, Collection) else 0


class _Times:
    """The size of the value times ``factor``: needs no binding of the arguments."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, a: _Arguments) -> int:
        return size_of(a["value"]) * self.factor


_times = _Times


_FILTER_SIZES: dict[str, Callable[[_Arguments], int] | None] = {
    # the result is small, or a part of the value, or lazy (an iterator, consumed by a bounded filter)
    **dict.fromkeys(
        (
            "abs", "attr", "count", "d", "default", "filesizeformat", "first", "float", "int", "items", "last",
            "length", "map", "max", "min", "random", "reject", "rejectattr", "round", "select", "selectattr",
            "striptags", "trim", "truncate", "unique", "wordcount", "safe_name",
        )
    ),
    **dict.fromkeys(
        ("capitalize", "dictsort", "list", "lower", "reverse", "safe", "sort", "string", "title", "upper"),
        _times(1),
    ),
    # each item without the attribute gets the default as its key
    "groupby": lambda a: size_of(a["value"]) + _count(a["value"]) * size_of(a["default"]),
    "batch": _filled("linecount"),
    "slice": _filled("slices"),
    "center": lambda a: max(size_of(a["value"]), number(a["width"])),
    "indent": _indented,
    "wordwrap": _wrapped,
    "format": lambda a: percent_size(str(a["value"]), a["kwargs"] or a["args"]),
    "replace": lambda a: replaced_size(str(a["s"]), a["old"], a["new"], a["count"]),
    "join": lambda a: joined_size(len(str(a["d"])), a["value"]),
    "sum": lambda a: size_of(a["iterable"]) + size_of(a["start"]),
    **dict.fromkeys(("e", "escape", "forceescape", "xmlattr"), _times(6)),  # &#34; for "
    "urlencode": _times(12),  # a 4-byte UTF-8 character is %XX four times
    "pprint": _times(10),
    "tojson": lambda a: size_of(a["value"]) * (6 + number(a["indent"] or 0) * size_of(a["value"])),
    "urlize": lambda a: size_of(a["value"]) * (64 + len(str(a["rel"] or "")) + len(str(a["target"] or ""))),
}
#: filters that read an iterator lazily: the others get its items as a list, counted as they come
_LAZY = frozenset(
    ("attr", "d", "default", "first", "map", "max", "min", "reject", "rejectattr",
     "select", "selectattr", "unique", "batch")
)  # fmt: skip


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox, plus bounds on what a template can make the process allocate, and a deadline."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=StrictUndefined, **options)
        self._render = threading.local()
        for name, function in list(self.filters.items()):
            self.filters[name] = self._bounded_filter(name, function)

    @contextlib.contextmanager
    def deadline(self, seconds: float | None = None) -> Iterator[None]:
        """Bound the time of the renders inside the block (of this thread): ``MAX_SECONDS`` unless given."""
        self._render.seconds = MAX_SECONDS if seconds is None else seconds
        self._render.deadline = time.monotonic() + self._render.seconds
        try:
            yield
        finally:
            self._render.deadline = None

    def _tick(self) -> None:
        deadline = getattr(self._render, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise SecurityError(f"the template took over {self._render.seconds:g} s")

    def add_filter(self, name: str, function: Callable[..., Any]) -> None:
        """Add a filter of ours, bounded like Jinja's (its size function in ``_FILTER_SIZES``)."""
        self.filters[name] = self._bounded_filter(name, function)

    def _bounded_filter(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        size = _FILTER_SIZES.get(name, _times(1))
        signature = inspect.signature(function)
        passed = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
        lazy = name in _LAZY

        @functools.wraps(function)  # keeps jinja_pass_arg: Jinja passes the context as before
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._tick()
            if len(args) > passed and not lazy:
                value = take(args[passed], f"the {name} filter")
                if name == "indent" and not isinstance(value, str):
                    value = str(value)  # Jinja's indent does value += "\n": it would extend a record's list
                args = (*args[:passed], value, *args[passed + 1 :])
            if isinstance(size, _Times):
                need(size_of(args[passed] if len(args) > passed else None) * size.factor, f"the {name} filter")
                return _checked(function(*args, **kwargs), f"the {name} filter", args)
            if size is not None:
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError:
                    return function(*args, **kwargs)  # the filter raises its own error
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments["value"] = next(iter(list(bound.arguments.values())[passed:]), None)
                need(size(arguments), f"the {name} filter")
                return _checked(function(*args, **kwargs), f"the {name} filter", args)
            return function(*args, **kwargs)  # the value, a part of it, or a number

        return bounded

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``text.format`` and ``format_map`` with every field bounded."""
        if (
            isinstance(value, types.MethodType | types.BuiltinMethodType)
            and value.__name__ in ("format", "format_map")
            and isinstance(value.__self__, str)
        ):
            return _BoundedFormat(self, value.__self__, value.__name__ == "format_map")
        return None

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A call from a template: an allowed method, its result's size computed first."""
        __self._tick()
        if isinstance(__obj, Undefined):
            return super().call(__context, __obj, *args, **kwargs)  # raises "... is undefined"
        if isinstance(__obj, _BoundedFormat):
            return _checked(__obj(*args, **kwargs), "format()", (__obj.text, *args))
        owner, name, size = _method(__obj)
        what = f"{type(owner).__name__}.{name}()"
        if name == "join" and args:
            args = (take(args[0], what), *args[1:])
            size = _joined
        if size is None:  # the object, a part of it, or a number
            return super().call(__context, __obj, *args, **kwargs)
        need(size(owner, args, kwargs), _call_text(what, args))
        return _checked(super().call(__context, __obj, *args, **kwargs), what, (owner, *args))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and ints and (abs(right) > 64 or left.bit_length() * abs(right) > MAX_BITS):
            raise SecurityError(f"the power {left.bit_length()} bits ** {right} is too large")
        if operator == "*":
            if ints and left.bit_length() + right.bit_length() > MAX_BITS:
                raise SecurityError("the product is too large")
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                    need(size_of(sequence) * count, "this repetition")
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            need(size_of(left) + size_of(right), "this concatenation")
        if operator == "%" and isinstance(left, str):
            percent_size(left, right)
        return _checked(super().call_binop(context, operator, left, right), f"the operator {operator}", (left, right))


def _checked(result: Any, what: str, inputs: Args) -> Any:
    """``result``, unless it is a new value over ``MAX_BUILT`` characters (a backstop of the sizes computed first)."""
    if any(result is value for value in inputs):
        return result  # not built: the value that came in
    if size_of(result) > MAX_BUILT:
        raise too_big(what)
    return result


def environment(extra_filters: Mapping[str, Callable[..., Any]]) -> BoundedSandbox:
    """A sandbox for name templates, with Jinja's filters and ``extra_filters``, bounded, and no globals."""
    env = BoundedSandbox(autoescape=False, keep_trailing_newline=False)
    for name, function in extra_filters.items():
        env.add_filter(name, function)
    # names are made of record fields: Jinja's globals (range, lipsum, cycler, ...) only render
    # object reprs such as "<function generate_lorem_ipsum at 0x7f...>" into them
    env.globals.clear()
    return env

