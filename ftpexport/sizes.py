"""How large a value a template operation would build, computed from its inputs before it is built.

``size_of`` counts about the characters ``str(value)`` has (a list counts its items'), and stops
counting past the bound. The sizes of ``replace``, ``join``, ``%``-formats and ``str.format``
fields come from their arguments; a width or precision over ``MAX_BUILT`` is refused at once.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Collection, Iterator, Mapping
from string import Formatter
from typing import Any

from jinja2 import Undefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter

#: the longest string or sequence a template operation may build; names are at most 255 bytes
MAX_BUILT = 4096
#: integers a template may compute, in bits (a 4096-bit number has over 1200 digits)
MAX_BITS = 4096


def too_big(what: str) -> SecurityError:
    """The refusal of an operation that would build a value over ``MAX_BUILT`` characters."""
    return SecurityError(f"{what} would build a value over {MAX_BUILT} characters; names are at most 255 bytes")


def need(size: int, what: str) -> None:
    """Refuse ``what`` if its result would have ``size`` characters, over ``MAX_BUILT``."""
    if size > MAX_BUILT:
        raise too_big(what)


def size_of(value: Any, limit: int = MAX_BUILT) -> int:
    """About how many characters ``str(value)`` has; counting stops past ``limit`` (then ``limit + 1``)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Undefined):
            pass  # using it raises "... is undefined"
        elif isinstance(item, bytes | bytearray):
            total += 4 * len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, Collection):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item)
        else:  # an iterator, a method, ...: str() gives its short repr
            total += 64
        if total > limit:
            return limit + 1
    return total


def number(value: Any) -> int:
    """An integer argument (a width, a count), or 0 when it is none: the call itself will refuse it."""
    try:
        return operator.index(value)
    except TypeError:
        return 0


def take(values: Any, what: str) -> Any:
    """``values`` itself, or an iterator's items as a list, refused when they add up to over ``MAX_BUILT``."""
    if not isinstance(values, Iterator):
        return values
    items, total = [], 2
    for item in values:
        total += size_of(item) + 2
        need(total, what)
        items.append(item)
    return items


def replaced_size(text: str, old: Any, new: Any, count: Any = -1) -> int:
    """The length of ``text.replace(old, new, count)``, without building it."""
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    hits = text.count(old) if old else len(text) + 1
    count = number(count) if count is not None else -1
    if count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def joined_size(separator: int, items: Any) -> int:
    """The length of ``separator.join(items)`` when ``items`` is a collection (counting stops past ``MAX_BUILT``)."""
    if isinstance(items, str):
        return len(items) + separator * max(len(items) - 1, 0)
    if isinstance(items, Mapping):
        items = items.keys()
    if not isinstance(items, Collection):
        return 0
    total = separator * max(len(items) - 1, 0)
    for item in items:
        if total > MAX_BUILT:
            break
        total += size_of(item)
    return total


# --- formatting: '%' and str.format, their widths and precisions bounded

_DIGITS = re.compile(r"\d+")


def _spec_size(spec: str, what: str) -> int:
    """The widths and precisions a format spec asks for, added up; any number over ``MAX_BUILT`` is refused."""
    total = 0
    for digits in _DIGITS.findall(spec):
        if len(digits) > 6 or int(digits) > MAX_BUILT:
            raise too_big(f"{what} {spec!r}")
        total += int(digits)
    return total


def _percent_fields(template: str) -> Iterator[tuple[str | None, str, str, str, str]]:
    """Each ``%`` conversion of a printf-style format: (key, width, precision, conversion, its text)."""
    i, n = 0, len(template)
    while (i := template.find("%", i)) >= 0:
        start, i = i, i + 1
        key = None
        if i < n and template[i] == "(":  # "%(name)s": the key ends at the matching parenthesis
            depth, j = 1, i + 1
            while j < n and depth:
                depth += {"(": 1, ")": -1}.get(template[j], 0)
                j += 1
            key, i = template[i + 1 : j - 1], j
        while i < n and template[i] in "-+ #0":
            i += 1
        width = precision = ""
        while i < n and (template[i].isdigit() or (template[i] == "*" and not width)):
            width += template[i]
            i += 1
        if i < n and template[i] == ".":
            precision, i = "0", i + 1
            while i < n and (template[i].isdigit() or (template[i] == "*" and precision == "0")):
                precision = template[i] if precision == "0" and template[i] == "*" else precision + template[i]
                i += 1
        if i < n and template[i] in "hlL":
            i += 1
        conversion = template[i] if i < n else ""
        i += 1
        yield key, width, precision, conversion, template[start:i]


def percent_size(template: str, values: Any) -> int:
    """An upper bound of ``len(template % values)``; refused when a width or precision is over ``MAX_BUILT``."""
    positional = list(values) if isinstance(values, tuple) else [] if isinstance(values, Mapping) else [values]
    mapping = values if isinstance(values, Mapping) else {}
    total = len(template)
    for key, width, precision, conversion, text in _percent_fields(template):
        if conversion == "%":
            continue
        sizes = []
        for digits in (width, precision):
            if digits == "*":
                sizes.append(number(positional.pop(0)) if positional else 0)
            else:
                sizes.append(int(digits) if digits and len(digits) <= 6 else MAX_BUILT + 1 if digits else 0)
        if max(sizes) > MAX_BUILT:
            raise too_big(f"the format {text!r}")
        value = mapping.get(key) if key is not None else positional.pop(0) if positional else None
        factor = 10 if conversion in ("r", "a") else 1  # repr/ascii escape a character into up to 10
        total += max(sizes[0], size_of(value) * factor + sizes[1])
        need(total, f"the format {template[:40]!r}")
    return total


class _BoundedFields(Formatter):
    """``str.format`` fields: each one's size is computed before it is formatted, and they add up."""

    total = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self.total = len(format_string)
        need(self.total, "this format")
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion in ("r", "a"):
            need(size_of(value) * 10, f"the conversion !{conversion}")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.total += size_of(value) + _spec_size(format_spec, "the format")
        need(self.total, "this format")
        return super().format_field(value, format_spec)


class BoundedFormatter(_BoundedFields, SandboxedFormatter):
    pass


class BoundedEscapeFormatter(_BoundedFields, SandboxedEscapeFormatter):
    pass
