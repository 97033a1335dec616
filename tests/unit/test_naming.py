"""naming.py: which names are refused, sandboxed rendering, and the safe_name filter."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftpexport.errors import NamingError, RecordError
from ftpexport.naming import MAX_COMPONENT_BYTES, NameTemplate, name_problem, safe_name

RECORD = "/inbox/veh-1"
ORIGIN = "rules/acme.yaml: package.image_name"

# --- name_problem

BOTH_KINDS: list[tuple[str, str]] = [
    ("", "is empty"),
    (" ", "is empty"),
    ("   \t ", "is empty"),
    ("\t", "is empty"),
    ("/abs.jpg", "is an absolute path"),
    ("/", "is an absolute path"),
    ("..", "contains '..'"),
    ("a..b.jpg", "contains '..'"),
    ("a\\b.jpg", "contains a backslash"),
    ("..\\x.jpg", "contains a backslash"),
    ("a\x00b.jpg", "contains NUL or control characters"),
    ("a\nb.jpg", "contains NUL or control characters"),
    ("a\rb.jpg", "contains NUL or control characters"),
    ("a\x1b[31m.jpg", "contains NUL or control characters"),
    ("a\x7f.jpg", "contains NUL or control characters"),
    (".", "has an empty, '.' or '..' path component"),
    (" a.jpg", "starts or ends with white space"),
    ("a.jpg ", "starts or ends with white space"),
    ("a.jpg\u00a0", "starts or ends with white space"),
    ("x" * (MAX_COMPONENT_BYTES + 1), f"is longer than {MAX_COMPONENT_BYTES} bytes"),
    ("é" * 128, f"is longer than {MAX_COMPONENT_BYTES} bytes"),  # 128 characters, 256 bytes
    ("😀" * 64, f"is longer than {MAX_COMPONENT_BYTES} bytes"),  # 64 characters, 256 bytes
    ("a\ud800.jpg", "is not valid Unicode text"),
]

ACCEPTED_BOTH = [
    "a.jpg",
    "WVWZZZ1JZXW000001_01.jpg",
    ".hidden",
    "x" * MAX_COMPONENT_BYTES,
    "é" * 127,  # 254 bytes
    "with inner space.jpg",
    "Lef\u00e8vre \u2013 Golf.json",  # an en dash
    "a:b*c?.jpg",  # not portable, but cannot leave the folder
]

FILE_ONLY = [
    ("a/b.jpg", "contains a path separator '/' where a plain file name is needed"),
    ("2026/11/20", "contains a path separator"),
]

DIR_ONLY: list[tuple[str, str | None]] = [
    ("a/b", None),
    ("2026-11-20/A1234", None),
    ("a/b/c/d", None),
    ("a//b", "has an empty, '.' or '..' path component"),
    ("a/b/", "has an empty, '.' or '..' path component"),
    ("a/./b", "has an empty, '.' or '..' path component"),
    ("/a", "is an absolute path"),
    ("a/../b", "contains '..'"),
    ("a/..", "contains '..'"),
    ("a/ b", "starts or ends with white space"),
    ("a/" + "x" * (MAX_COMPONENT_BYTES + 1), f"is longer than {MAX_COMPONENT_BYTES} bytes"),
    ("a/" + "x" * MAX_COMPONENT_BYTES + "/b", None),
]


@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("name, problem", BOTH_KINDS, ids=[repr(n)[:40] for n, _ in BOTH_KINDS])
def test_name_problem_refuses(name: str, problem: str, kind: Any) -> None:
    assert name_problem(name, kind) == problem or (name_problem(name, kind) or "").startswith(problem)


@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("name", ACCEPTED_BOTH, ids=[n[:30] for n in ACCEPTED_BOTH])
def test_name_problem_accepts(name: str, kind: Any) -> None:
    assert name_problem(name, kind) is None


@pytest.mark.parametrize("name, problem", FILE_ONLY)
def test_a_file_name_is_one_component(name: str, problem: str) -> None:
    result = name_problem(name, "file")
    assert result is not None
    assert result.startswith(problem)
    assert name_problem(name, "dir") is None


@pytest.mark.parametrize("name, problem", DIR_ONLY, ids=[n[:30] for n, _ in DIR_ONLY])
def test_a_directory_may_have_components(name: str, problem: str | None) -> None:
    assert name_problem(name, "dir") == problem


# --- rendering


def render(source: str, context: dict[str, Any], kind: Any = "file") -> str:
    return NameTemplate(source, kind).render(context, record=RECORD, origin=ORIGIN)


def test_rendering_uses_record_fields_and_filters() -> None:
    context = {"vin": "WVWZZZ1JZXW000001", "n": 3, "ext": "jpg"}

    assert render("{{ vin | lower }}_{{ '%02d' | format(n) }}.{{ ext }}", context) == "wvwzzz1jzxw000001_03.jpg"


def test_nested_fields_and_slices() -> None:
    context = {"user": {"name": "Jeanne"}, "processed_at": "2026-11-20T14:03:00+01:00"}

    assert render("{{ processed_at[:10] }}/{{ user.name }}", context, "dir") == "2026-11-20/Jeanne"


def test_an_undefined_field_is_a_naming_error_naming_origin_and_template() -> None:
    with pytest.raises(NamingError) as caught:
        render("{{ stock }}.jpg", {"vin": "X"})

    error = caught.value
    assert isinstance(error, RecordError)
    assert error.path == RECORD
    assert error.reason == f"{ORIGIN}: template '{{{{ stock }}}}.jpg' failed: 'stock' is undefined"
    assert str(error).startswith(f"{RECORD}: {ORIGIN}: template")


def test_an_attribute_of_a_null_field_is_a_naming_error() -> None:
    with pytest.raises(NamingError, match=r"template '\{\{ user.name \}\}' failed: .*has no attribute 'name'"):
        render("{{ user.name }}", {"user": None})


def test_a_filter_refusing_a_value_is_a_naming_error_not_a_crash() -> None:
    with pytest.raises(NamingError) as caught:
        render("{{ '%02d' | format(stock_number) }}.jpg", {"stock_number": "A12"})
    assert "TypeError" in caught.value.reason
    assert ORIGIN in caught.value.reason

    with pytest.raises(NamingError, match="ZeroDivisionError"):
        render("{{ n / 0 }}.jpg", {"n": 1})


def test_a_rendered_name_that_is_refused_names_the_problem() -> None:
    with pytest.raises(NamingError) as caught:
        render("{{ stock_number }}.jpg", {"stock_number": "A/12"})

    assert caught.value.reason == (
        f"{ORIGIN}: template '{{{{ stock_number }}}}.jpg' rendered 'A/12.jpg', which contains a path separator "
        "'/' where a plain file name is needed"
    )
    assert "safe_name" in str(caught.value)  # the hint says how to fix it


def test_a_large_rendered_value_is_not_echoed_whole() -> None:
    with pytest.raises(NamingError) as caught:
        render("{{ stock_number }}", {"stock_number": "Z" * 100_000})

    assert f"is longer than {MAX_COMPONENT_BYTES} bytes" in caught.value.reason
    assert "(100000 characters)" in caught.value.reason
    assert len(str(caught.value)) < 500


@pytest.mark.parametrize(
    "field, value, problem, dir_problem",
    [
        ("stock_number", "A/12", "contains a path separator", None),  # a sub-folder is fine in remote_dir
        ("make", "../x", "contains '..'", "contains '..'"),
        ("make", "..", "contains '..'", "contains '..'"),
        ("make", "/etc/passwd", "is an absolute path", "is an absolute path"),
        ("make", "a\\b", "contains a backslash", "contains a backslash"),
        ("make", "a\r\nDELE x", "contains NUL or control characters", "contains NUL or control characters"),
        ("make", " ", "starts or ends with white space", "starts or ends with white space"),
    ],
)
def test_record_fields_cannot_escape_the_folder_unless_safe_name_is_used(
    field: str, value: str, problem: str, dir_problem: str | None
) -> None:
    context = {field: value, "vin": "V"}

    with pytest.raises(NamingError, match=re.escape(problem)):
        render(f"{{{{ {field} }}}}_{{{{ vin }}}}.jpg", context)
    if dir_problem:
        with pytest.raises(NamingError, match=re.escape(dir_problem)):
            render(f"{{{{ {field} }}}}/{{{{ vin }}}}", context, "dir")
    else:
        assert render(f"{{{{ {field} }}}}/{{{{ vin }}}}", context, "dir") == f"{value}/V"

    safe = render(f"{{{{ {field} | safe_name }}}}_{{{{ vin }}}}.jpg", context)
    assert name_problem(safe, "file") is None
    assert safe.endswith("_V.jpg")


def test_safe_name_in_a_directory_template() -> None:
    assert render("{{ stock_number | safe_name }}", {"stock_number": "A/12"}, "dir") == "A_12"
    assert render("{{ make | safe_name }}/{{ vin }}", {"make": "../x", "vin": "V"}, "dir") == "_x/V"


# --- the sandbox: templates from rule files never run code


def test_templates_cannot_reach_python_internals(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ vin.__class__ }}",
        "{{ vin.upper.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        f"{{{{ lipsum.__globals__['os'].popen('touch {marker}') }}}}",
        f"{{{{ joiner.__init__.__globals__.os.system('touch {marker}') }}}}",
        "{{ namespace.__init__ }}",
        "{{ range.__globals__ }}",
        "{{ config }}",
        "{{ request.application }}",
    ]
    for payload in payloads:
        template = NameTemplate(payload)  # compiles: the sandbox acts when it runs
        with pytest.raises(NamingError) as caught:
            template.render({"vin": "WVWZZZ1JZXW000001"}, record=RECORD, origin=ORIGIN)
        assert ORIGIN in caught.value.reason
        reason = caught.value.reason
        assert any(why in reason for why in ("is unsafe", "is undefined", "has no attribute")), reason
    assert not marker.exists()


@pytest.mark.parametrize(
    "source",
    [
        "{{ self }}",
        "{{ self }}.jpg",
        "{{ self.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('id').read() }}",
        "{% set self = 1 %}{{ vin }}",
    ],
)
def test_templates_using_self_are_refused_when_they_compile(source: str) -> None:
    with pytest.raises(ValueError, match="the template uses 'self'"):
        NameTemplate(source)


def test_jinja_globals_are_not_rendered_into_names() -> None:
    # they would put object reprs (with memory addresses) into remote names
    for source in ("{{ lipsum }}", "{{ range }}", "{{ dict }}", "{{ cycler }}", "{{ namespace }}"):
        with pytest.raises(NamingError, match="is undefined"):
            render(source, {"vin": "V"})


def test_a_record_field_may_be_called_like_a_jinja_global() -> None:
    assert render("{{ range }}_{{ dict }}.jpg", {"range": "r", "dict": "d"}) == "r_d.jpg"


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ vin ", "template syntax error: unexpected end of template"),
        ("{{ vin }}{% endif %}", "template syntax error: Encountered unknown tag 'endif'"),
        ("{{ vin | no_such_filter }}", "template syntax error: No filter named 'no_such_filter'"),
        ("", "the template is empty"),
        ("   ", "the template is empty"),
    ],
)
def test_template_errors_at_compile_time(source: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        NameTemplate(source)
    assert str(caught.value).startswith(message)


def test_name_template_value_semantics() -> None:
    template = NameTemplate("{{ vin }}.zip", "file")

    assert str(template) == "{{ vin }}.zip"
    assert repr(template) == "NameTemplate('{{ vin }}.zip', kind='file')"
    assert template == NameTemplate("{{ vin }}.zip")
    assert template != NameTemplate("{{ vin }}.zip", "dir")
    assert len({template, NameTemplate("{{ vin }}.zip")}) == 1


# --- safe_name


@pytest.mark.parametrize(
    "value, expected",
    [
        ("A/12", "A_12"),
        ("../x", "_x"),
        ("../../etc/passwd", "_._etc_passwd"),
        ("..", "_"),
        ("...", "_"),
        (".hidden", "hidden"),
        ("a..b", "a.b"),
        ("a\\b", "a_b"),
        ('a:b*c?"<>|d', "a_b_c_d"),
        ("a\x00b\nc", "a_b_c"),
        ("", "_"),
        ("   ", "_"),
        ("  x  ", "x"),
        (". a", "a"),
        ("Lefèvre", "Lefèvre"),
        (12, "12"),
        (None, "None"),
        ("a\ud800b", "a_b"),
    ],
)
def test_safe_name(value: Any, expected: str) -> None:
    assert safe_name(value) == expected


def test_safe_name_is_short_in_characters_and_bytes() -> None:
    assert safe_name("x" * 1000) == "x" * 100
    emoji = safe_name("😀" * 1000)
    assert len(emoji.encode()) <= MAX_COMPONENT_BYTES
    assert name_problem(emoji, "file") is None
    # a cut that lands on a space does not leave the space at the end
    assert safe_name("a" * 99 + " bcd") == "a" * 99


# the characters that matter (lone surrogates too: JSON can carry them), plus any character in short
# texts; long texts reach safe_name's 100-character cut, where a space or a wide character can land
_SPECIAL = st.sampled_from(list('aZ09.-_ /\\:*?"<>|\x00\n\t\x7f\u00a0\u2028\ud800é😀'))
NASTY = st.text(alphabet=_SPECIAL | st.characters(), max_size=30) | st.text(
    alphabet=_SPECIAL, min_size=90, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(NASTY)
def test_safe_name_output_always_passes_name_problem(value: str) -> None:
    name = safe_name(value)

    assert name_problem(name, "file") is None
    assert name_problem(name, "dir") is None


@settings(max_examples=200, deadline=None)
@given(NASTY)
def test_a_name_without_problem_stays_inside_the_destination(value: str) -> None:
    problem = name_problem(value, "dir")  # never raises, whatever the text

    if problem is None:
        joined = posixpath.normpath(posixpath.join("/dest", value))
        assert joined.startswith("/dest/")
        assert "\\" not in value
        assert not any(ord(c) < 32 or ord(c) == 127 for c in value)
        if name_problem(value, "file") is None:
            assert posixpath.dirname(joined) == "/dest"


@settings(max_examples=200, deadline=None)
@given(NASTY)
def test_any_record_value_renders_through_safe_name(value: str) -> None:
    name = render("{{ stock_number | safe_name }}_{{ '%02d' | format(n) }}.jpg", {"stock_number": value, "n": 1})

    assert name_problem(name, "file") is None


# --- templates cannot exhaust memory or CPU before the name checks run

RESOURCE_ATTACKS = [
    ("{{ 'a' * 10**9 }}", "repetition"),
    ("{{ vin * 100000 }}", "repetition"),
    ("{{ 100000 * vin }}", "repetition"),
    ("{{ [vin] * 10**8 }}", "repetition"),
    ("{{ 9 ** 999 }}", "too large"),
    ("{{ 10**64**64**64 }}", "too large"),
    ("{{ (10**1200) * (10**1200) }}", "too large"),
    ("{{ '%0999999999d' | format(1) }}", "format"),
    ("{{ '%.999999999f' | format(1.5) }}", "format"),
    ("{{ '%*d' | format(10**9, 1) }}", "format"),
    ("{{ vin | center(10**9) }}", "center"),
    ("{{ vin | indent(999999999) }}", "indent"),
    ("{{ ('W' * 4000) | replace('W', 'W' * 4000) }}", "replace"),
    ("{{ ('W' * 4000) | replace('', 'xx') }}", "replace"),
]


@pytest.mark.parametrize("source, what", RESOURCE_ATTACKS)
def test_templates_cannot_build_huge_values(source: str, what: str) -> None:
    with pytest.raises(NamingError) as caught:
        render(source, {"vin": "WVWZZZ1JZXW000001"})
    assert what in caught.value.reason


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in vin %}{{ i }}{% endfor %}",
        "{% set a = vin ~ vin %}{{ a }}",
        "{% set a %}{{ vin }}{% endset %}{{ a }}",
        "{% macro m() %}{{ vin }}{% endmacro %}{{ m() }}",
        "{% filter upper %}{{ vin }}{% endfilter %}",
        "{% with a = vin %}{{ a }}{% endwith %}",
        "{% include 'x' %}",
        "{% block b %}{{ vin }}{% endblock %}",
    ],
)
def test_loops_assignments_macros_and_includes_are_refused_when_they_compile(source: str) -> None:
    with pytest.raises(ValueError, match="a name template is an expression"):
        NameTemplate(source)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("{% if stock_number %}{{ stock_number }}{% else %}none{% endif %}.zip", "A1.zip"),
        ("{{ '%02d' | format(n) }}.jpg", "03.jpg"),
        ("{{ vin | replace('W', 'w') }}", "wVwZZZ1JZXw000001"),
        ("{{ vin | truncate(5, True, '') }}", "WVWZZ"),
        ("{{ 2 ** 10 }}_{{ vin * 2 }}", "1024_WVWZZZ1JZXW000001WVWZZZ1JZXW000001"),
    ],
)
def test_ordinary_templates_still_work_within_the_bounds(source: str, expected: str) -> None:
    assert render(source, {"vin": "WVWZZZ1JZXW000001", "n": 3, "stock_number": "A1"}) == expected


# --- names no server should get: controls, bidi, and (portable) what Windows cannot store

INVISIBLE = ["\x80", "\x85", "\x9b", "\x9f", "\u2028", "\u2029"]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f",
        "\u061c"]  # fmt: skip


@pytest.mark.parametrize("names", ["portable", "posix"])
@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("char", INVISIBLE + BIDI, ids=[f"U+{ord(c):04X}" for c in INVISIBLE + BIDI])
def test_c1_controls_separators_and_bidi_controls_are_refused_everywhere(char: str, kind: Any, names: Any) -> None:
    problem = name_problem(f"invoice{char}gpj.exe", kind, names)

    assert problem is not None
    assert f"U+{ord(char):04X}" in problem
    assert problem.startswith("contains NUL or control characters" if char in INVISIBLE else "contains a bidirectional")


WINDOWS_ONLY = [
    ("CON", "is the Windows device name CON"),
    ("con.zip", "is the Windows device name CON"),
    ("Con.tar.gz", "is the Windows device name CON"),
    ("aux.zip", "is the Windows device name AUX"),
    ("AUX", "is the Windows device name AUX"),
    ("nul.json", "is the Windows device name NUL"),
    ("prn", "is the Windows device name PRN"),
    ("LPT1.zip", "is the Windows device name LPT1"),
    ("lpt9", "is the Windows device name LPT9"),
    ("COM1", "is the Windows device name COM1"),
    ("com0.txt", "is the Windows device name COM0"),
    ("COM\u00b9.jpg", "is the Windows device name COM\u00b9"),
    ("lpt\u00b3", "is the Windows device name LPT\u00b3"),
    ("CONIN$", "is the Windows device name CONIN$"),
    ("nul .txt", "is the Windows device name NUL"),
    ("name.", "ends with a dot"),
    ("name.zip.", "ends with a dot"),
    *[(f"a{c}b.zip", f"contains {c!r}") for c in '<>:"|?*'],
]
PORTABLE = ["CONSOLE.zip", "CON_.zip", "com10.jpg", "LPT.zip", "auxiliary", "nul_", "a.b.c", ".hidden", "é.jpg"]


@pytest.mark.parametrize("name, problem", WINDOWS_ONLY, ids=[n for n, _ in WINDOWS_ONLY])
def test_windows_reserved_names_are_refused_unless_the_server_is_posix(name: str, problem: str) -> None:
    assert (name_problem(name, "file", "portable") or "").startswith(problem)
    assert (name_problem(f"2026/{name}/x", "dir", "portable") or "").startswith(problem)  # in any component
    assert name_problem(name, "file", "posix") is None
    assert name_problem(f"2026/{name}/x", "dir", "posix") is None


@pytest.mark.parametrize("name", PORTABLE)
def test_names_that_only_look_reserved_are_portable(name: str) -> None:
    assert name_problem(name, "file", "portable") is None


def test_rendering_refuses_non_portable_names_by_default_and_says_what_to_do() -> None:
    template = NameTemplate("{{ stock_number }}.zip")

    with pytest.raises(NamingError) as caught:
        template.render({"stock_number": "aux"}, record=RECORD, origin=ORIGIN)

    assert caught.value.reason.endswith("rendered 'aux.zip', which is the Windows device name AUX (reserved with any "
                                        "extension)")  # fmt: skip
    assert "names: posix" in str(caught.value) and "safe_name" in str(caught.value)
    assert template.render({"stock_number": "aux"}, record=RECORD, origin=ORIGIN, names="posix") == "aux.zip"


def test_rendered_names_are_normalised_to_nfc() -> None:
    decomposed, composed = "Lefe\u0300vre", "Lef\u00e8vre"

    first = render("{{ make }}.zip", {"make": decomposed})
    second = render("{{ make }}.zip", {"make": composed})

    assert first == second == "Lef\u00e8vre.zip"
    assert render("{{ make }}/{{ vin }}", {"make": decomposed, "vin": "V"}, "dir") == "Lef\u00e8vre/V"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("CON", "CON_"),
        ("con.zip", "con_.zip"),
        ("Aux.tar.gz", "Aux_.tar.gz"),
        ("LPT1", "LPT1_"),
        ("com\u00b2.jpg", "com\u00b2_.jpg"),
        ("name.", "name"),
        ("name. . .", "name"),
        ("a<b>c:d", "a_b_c_d"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("a\u2066b\u2069c\u200f", "abc"),
        ("a\x85b\u2028c", "a_b_c"),
        ("Lefe\u0300vre", "Lef\u00e8vre"),
        ("CON" + "x" * 200, "CON" + "x" * 97),
        ("CON." + "x" * 200, "CON_." + "x" * 95),
    ],
)
def test_safe_name_gives_portable_names(value: str, expected: str) -> None:
    assert safe_name(value) == expected
    assert name_problem(safe_name(value), "file", "portable") is None


_PORTABLE_SPECIAL = st.sampled_from(
    [*'aZ09.-_ /\\:*?"<>|\x00\n\t\x7f\u00a0\u3000\ud800é😀', *INVISIBLE, *BIDI,
     "CON", "aux", "LPT1", "com\u00b9", "nul", "CONIN$", "e\u0301", "\u0958", "\ufb2c", "\u1100\u1161", ".."]
)  # fmt: skip
PORTABLE_NASTY = st.lists(_PORTABLE_SPECIAL | st.characters(), max_size=30).map("".join) | st.lists(
    _PORTABLE_SPECIAL, min_size=40, max_size=200
).map("".join)


@settings(max_examples=500, deadline=None)
@given(PORTABLE_NASTY)
def test_safe_name_output_is_always_portable_and_nfc(value: str) -> None:
    name = safe_name(value)

    assert name_problem(name, "file", "portable") is None
    assert name_problem(name, "dir", "portable") is None
    assert unicodedata.is_normalized("NFC", name)
    assert len(name) <= 100
