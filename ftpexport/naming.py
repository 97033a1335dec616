"""Remote names from Jinja templates: compiled when rules load, rendered sandboxed, then validated.

A rendered file name must be a single, plain path component; a rendered directory may hold
``/`` between components. Neither can be empty, absolute, contain ``..``, a backslash, control
characters (C0, C1, U+2028/U+2029) or bidirectional controls, or have a component longer than
255 bytes, so no record field can make an upload leave the destination folder or disguise its
name. By default names are also portable (``names: portable``): no Windows-reserved device name
(``CON``, ``aux.zip``, ``LPT1``), no trailing dot, none of ``<>:"|?*``. Every rendered name is
normalised to Unicode NFC first, so two spellings of one name are one name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

from jinja2 import TemplateError, TemplateSyntaxError, nodes

from .errors import NamingError
from .sandbox import environment

MAX_COMPONENT_BYTES = 255
#: the longest ``safe_name`` result, in characters, leaving room for the rest of a name
SAFE_NAME_CHARS = 100
#: how much of a rendered name an error message quotes
_QUOTE = 80
#: C0 controls, DEL, C1 controls, the line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: bidirectional controls (embeddings, overrides, isolates, marks): they make a name read differently
_BIDI = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: characters a Windows file system cannot store in a name (besides / and \)
_WINDOWS_CHARS = re.compile(r'[<>:"|?*]')
#: Windows device names, reserved with any extension and in any case (``aux.zip``, ``Con.tar.gz``)
_RESERVED = re.compile(r"CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3]", re.I)
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029/\\:*?\"<>|]+")

Kind = Literal["file", "dir"]
#: what a destination's server can store: ``portable`` (Windows too, the default) or ``posix``
NameRules = Literal["portable", "posix"]
#: what to do about a name that is not portable
PORTABLE_HINT = (
    "use the safe_name filter in the template ({{ field | safe_name }}), or set names: posix on the "
    "destination if its server is POSIX-only"
)


def _reserved_stem(component: str) -> str | None:
    """The Windows device name ``component`` starts with (``CON`` of ``con.zip``), or None."""
    stem = component.split(".", 1)[0].rstrip(" ")
    return stem if _RESERVED.fullmatch(stem) else None


def safe_name(value: Any) -> str:
    """Jinja filter: turn any value into a harmless, portable file name component (``A/12`` -> ``A_12``)."""
    # lone surrogates (possible in JSON text) cannot be encoded: they become "?", then "_"
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    text = _BIDI.sub("", unicodedata.normalize("NFC", text))
    text = _UNSAFE_CHARS.sub("_", text)
    text = _fit(re.sub(r"^[\s.]+", "", re.sub(r"\.{2,}", ".", text)))
    stem = _reserved_stem(text)
    if stem is not None:  # CON -> CON_, aux.zip -> aux_.zip
        text = _fit(stem + "_" + text[len(stem) :])
    return text or "_"


def _fit(text: str) -> str:
    """``text`` cut to ``SAFE_NAME_CHARS`` characters and 255 bytes, without white space or a dot at its end."""
    text = text[:SAFE_NAME_CHARS]
    while len(text.encode("utf-8")) > MAX_COMPONENT_BYTES:
        text = text[:-1]
    return re.sub(r"[\s.]+$", "", text)  # cut first, so that the cut leaves neither at the end


def shorten(text: str) -> str:
    """``text`` quoted for a message, cut after 80 characters."""
    return repr(text) if len(text) <= _QUOTE else repr(text[:_QUOTE]) + f"... ({len(text)} characters)"


_ENV = environment({"safe_name": safe_name})

# Statements a name never needs, and that would let a template loop or double a value over and over.
_STATEMENTS: tuple[type[nodes.Node], ...] = (
    nodes.For, nodes.Macro, nodes.CallBlock, nodes.Assign, nodes.AssignBlock, nodes.FilterBlock,
    nodes.With, nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends, nodes.Block,
)  # fmt: skip


class NameTemplate:
    """A compiled name template; ``str()`` gives its source text."""

    def __init__(self, source: str, kind: Kind = "file") -> None:
        if not isinstance(source, str) or not source.strip():
            raise ValueError("the template is empty")
        try:
            tree = _ENV.parse(source)
            if any(node.name == "self" for node in tree.find_all(nodes.Name)):
                raise ValueError("the template uses 'self', Jinja's template object: names are made of record fields")
            statement = next(tree.find_all(_STATEMENTS), None)
            if statement is not None:
                raise ValueError(
                    f"the template uses a '{type(statement).__name__.lower()}' block: a name template is an "
                    "expression, with {% if %} at most (no loops, assignments, macros or includes)"
                )
            self._template = _ENV.from_string(tree)
        except TemplateSyntaxError as exc:  # also an unknown filter (TemplateAssertionError), found when compiling
            raise ValueError(f"template syntax error: {exc.message} (line {exc.lineno})") from exc
        self.source = source
        self.kind: Kind = kind

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"NameTemplate({self.source!r}, kind={self.kind!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameTemplate) and (self.source, self.kind) == (other.source, other.kind)

    def __hash__(self) -> int:
        return hash((self.source, self.kind))

    def evaluate(self, context: Mapping[str, Any]) -> str:
        """The rendered text, in NFC, not validated; raises what the template raises."""
        with _ENV.deadline():
            return unicodedata.normalize("NFC", self._template.render(context))

    def render(
        self, context: Mapping[str, Any], *, record: str, origin: str, names: NameRules = "portable"
    ) -> str:
        """Render, normalise to NFC and validate against ``names``; ``record`` (its folder) and
        ``origin`` (rule file: field) locate errors."""
        try:
            rendered = self.evaluate(context)
        except TemplateError as exc:
            raise NamingError(
                record,
                f"{origin}: template {self.source!r} failed: {exc.message or type(exc).__name__}",
                hint="fix the template, or give the record the field it needs",
            ) from exc
        except Exception as exc:  # a filter meeting a value it cannot take: '%02d' | format("x"), x / 0
            raise NamingError(
                record,
                f"{origin}: template {self.source!r} failed: {type(exc).__name__}: {shorten(str(exc))}",
                hint="fix the template, or the record field it uses",
            ) from exc
        problem = name_problem(rendered, self.kind, names)
        if problem:
            portable_only = names == "portable" and name_problem(rendered, self.kind, "posix") is None
            raise NamingError(
                record,
                f"{origin}: template {self.source!r} rendered {shorten(rendered)}, which {problem}",
                hint=PORTABLE_HINT if portable_only else
                "fix the record, or use the safe_name filter in the template: {{ field | safe_name }}",
            )  # fmt: skip
        return rendered


def name_problem(name: str, kind: Kind, names: NameRules = "posix") -> str | None:
    """Why ``name`` cannot be used as a remote file (or directory) name, or None if it can.

    ``posix``: the rules of every server (the name stays in its folder and reads as it is);
    ``portable`` adds what a Windows server cannot store.
    """
    if not name or not name.strip():
        return "is empty"
    if control := _CONTROL.search(name):
        return f"contains NUL or control characters (U+{ord(control.group()):04X})"
    if bidi := _BIDI.search(name):
        return f"contains a bidirectional control character (U+{ord(bidi.group()):04X}) that can disguise the name"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if ".." in name:
        return "contains '..'"
    components = name.split("/")
    if kind == "file" and len(components) > 1:
        return "contains a path separator '/' where a plain file name is needed"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    for component in components:
        if component in ("", ".", ".."):
            return "has an empty, '.' or '..' path component"
        if component != component.strip():
            return "starts or ends with white space"
        if len(component.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"is longer than {MAX_COMPONENT_BYTES} bytes"
    return portability_problem(components) if names == "portable" else None


def portability_problem(components: list[str]) -> str | None:
    """What a Windows server cannot store in these path components, or None."""
    for component in components:
        if char := _WINDOWS_CHARS.search(component):
            return f"contains {char.group()!r} (a Windows server cannot store it in a name)"
        if component.endswith("."):
            return "ends with a dot (a Windows server removes it)"
        if stem := _reserved_stem(component):
            return f"is the Windows device name {stem.upper()} (reserved with any extension)"
    return None
