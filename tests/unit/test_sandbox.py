"""sandbox.py: no template can build a large value, by any call, operator, format or filter.

Each family is tested as a whole: every method of the types a template meets, every Jinja
filter, %-formats and {}-formats with a huge number in every position, joins of repeated lists.
Every attempt must end in a NamingError or a small value, and the render must not allocate more
than a little memory (tracemalloc's peak: refused BEFORE building, not after).
"""

from __future__ import annotations

import copy
import itertools
import tracemalloc
from typing import Any

import pytest

from ftpexport import sandbox
from ftpexport.errors import NamingError
from ftpexport.naming import NameTemplate
from ftpexport.sandbox import MAX_BUILT

RECORD = "/inbox/veh-1"
ORIGIN = "rules/acme.yaml: package.archive_name"
CONTEXT: dict[str, Any] = {
    "vin": "WVWZZZ1JZXW000001",
    "n": 3,
    "make": "Volkswagen",
    "model": "Golf",
    "images": ["01.jpg", "02.jpg", "03.png"],
    "extra": {"dealer_code": "ACM01"},
    "user": {"name": "Jeanne Dupont"},
    "processed_at": "2026-11-20T14:03:00+01:00",
}
HUGE = "999999999"
#: a render may use this much memory at its peak; building any value above costs 1 GB
PEAK = 1024 * 1024
REFUSED = ("would build a value over", "is not available in name templates", "is too large")


def attempt(source: str, context: dict[str, Any] | None = None) -> tuple[str | NamingError, int]:
    """Render ``source``; (the name or the NamingError, the peak of memory allocated meanwhile)."""
    template = NameTemplate(source, "dir")
    tracemalloc.start()
    try:
        try:
            result: str | NamingError = template.render(context or CONTEXT, record=RECORD, origin=ORIGIN, names="posix")
        except NamingError as exc:
            result = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def assert_refused(source: str, context: dict[str, Any] | None = None) -> None:
    result, peak = attempt(source, context)
    assert isinstance(result, NamingError), f"{source} rendered {len(result)} characters"
    assert any(why in result.reason for why in REFUSED), result.reason
    assert ORIGIN in result.reason
    assert peak < PEAK, f"{source}: {peak} bytes allocated"


def assert_bounded(source: str) -> None:
    """Refused, or failed (wrong arguments), or rendered a small value: never a large allocation."""
    result, peak = attempt(source)
    if not isinstance(result, NamingError):
        assert len(result) <= MAX_BUILT, source
    assert peak < PEAK, f"{source}: {peak} bytes allocated"


# --- the examples of the issue, and their neighbours


@pytest.mark.parametrize(
    "source",
    [
        "{{ vin.ljust(999999999) }}",
        "{{ vin.rjust(999999999) }}",
        "{{ vin.center(999999999) }}",
        "{{ vin.zfill(999999999) }}",
        "{{ vin.ljust(999999999, '_') }}",
        "{{ ('a\tb' * 100).expandtabs(999999999) }}",
        "{{ '%999999999s' % vin }}",
        "{{ '{:>999999999}'.format(vin) }}",
        "{{ ('x' * 4000).join([vin] * 100) }}",
        "{{ ('x' * 4000).join('x' * 4000) }}",
        "{{ ('x' * 4000).join(images) }}",
        "{{ [('x' * 4000)] * 2 }}",
        "{{ ([vin] * 200) | join('x' * 4000) }}",
        "{{ [[vin] * 100] * 100 }}",
        "{{ ('W' * 4000).replace('W', 'WW') }}",
        "{{ vin.replace('', 'x' * 4000) }}",
        "{{ (vin | attr('ljust'))(999999999) }}",
        "{{ (vin | e).ljust(999999999) }}",
        "{{ (vin | e).center(999999999) }}",
        "{{ ('%999999999s' | e) % vin }}",
        "{{ ('{:>999999999}' | e).format(vin) }}",
        "{{ images | map('center', 999999999) | join }}",
        "{{ images | map('center', 4000) | join }}",
        "{{ images | map('center', 4000) | list }}",
        "{{ [vin] | batch(999999999, 'x') | list }}",
        "{{ [vin] | batch(4000, 'x' * 4000) | list }}",
        "{{ [vin] | slice(999999999) | list }}",
        "{{ vin | wordwrap(1, True, 'x' * 4000) }}",
        "{{ ('a\n' * 1000) | indent('x' * 4000) }}",
        "{{ vin | indent(999999999, True) }}",
        "{{ extra | tojson(999999999) }}",
        "{{ [[vin] * 200, [vin] * 200] | sum(start=[]) }}",
        "{{ ('{0}' * 1000).format('x' * 4000) }}",
        "{{ ('%s' * 1000) | format(*(['x' * 4000] * 1)) }}",
        "{{ n.to_bytes(999999999, 'big') }}",
        "{{ images.extend(images) }}",
        "{{ '%(a)0999999999d' | format(a=1) }}",
        "{{ '%(a)0999999999d' % {'a': 1} }}",
    ],
)
def test_the_examples_are_refused_before_they_allocate(source: str) -> None:
    assert_refused(source)


# --- every method of every type a template meets


OWNERS = {
    "str": "vin",
    "str with tabs": "('a\tb' * 10)",
    "markup": "(vin | e)",
    "list": "images",
    "tuple": "(1, 2)",
    "dict": "extra",
    "int": "n",
    "float": "(1.5)",
}
OWNER_TYPES = {"str": str, "str with tabs": str, "markup": str, "list": list, "tuple": tuple, "dict": dict,
               "int": int, "float": float}  # fmt: skip
ARGUMENTS = [
    "",
    HUGE,
    f"{HUGE}, '_'",
    f"{HUGE}, {HUGE}",
    "'', 'x' * 4000",
    "'W', 'x' * 4000",
    "'x' * 4000",
    "[vin] * 200",
    f"'{{:>{HUGE}}}'",
    "'big'",
    f"{HUGE}, 'big'",
]


@pytest.mark.parametrize(
    "owner, method",
    [(owner, name) for owner, kind in OWNER_TYPES.items() for name in dir(kind) if not name.startswith("_")],
)
def test_no_method_of_any_type_builds_a_large_value(owner: str, method: str) -> None:
    before = copy.deepcopy(CONTEXT)
    for arguments in ARGUMENTS:
        assert_bounded(f"{{{{ {OWNERS[owner]}.{method}({arguments}) }}}}")
    assert before == CONTEXT  # and the record is as it was


@pytest.mark.parametrize(
    "source",
    [
        "{{ images.append(1) }}",
        "{{ images.extend(images) }}",
        "{{ images.insert(0, 1) }}",
        "{{ images.pop() }}",
        "{{ images.clear() }}",
        "{{ images.sort() }}",
        "{{ extra.update({'a': 1}) }}",
        "{{ extra.pop('dealer_code') }}",
        "{{ extra.setdefault('a', 1) }}",
        "{{ extra.clear() }}",
    ],
)
def test_templates_cannot_change_the_record(source: str) -> None:
    context = {"images": ["01.jpg"], "extra": {"dealer_code": "ACM01"}}

    result, _ = attempt(source, context)

    assert isinstance(result, NamingError)
    assert "is not available in name templates" in result.reason
    assert context == {"images": ["01.jpg"], "extra": {"dealer_code": "ACM01"}}


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ vin.encode() }}", "str.encode() is not available"),
        ("{{ vin.translate({}) }}", "str.translate() is not available"),
        ("{{ vin.maketrans('a', 'b') }}", "is not available"),
        ("{{ n.to_bytes(2, 'big') }}", "int.to_bytes() is not available"),
        ("{{ extra.fromkeys('ab') }}", "is not available"),
    ],
)
def test_methods_outside_the_allowed_list_are_refused_by_name(source: str, message: str) -> None:
    result, _ = attempt(source)

    assert isinstance(result, NamingError)
    assert message in result.reason


# --- formats: a huge width or precision in every position

PERCENT_SPECS = [
    f"%{flags}{width}{precision}{conversion}"
    for flags in ("", "-", "0", "+", " ", "#", "-0")
    for width, precision in ((HUGE, ""), ("", f".{HUGE}"), (HUGE, ".2"), ("2", f".{HUGE}"), ("*", ""), ("", ".*"))
    for conversion in "sdfxerac"
]


@pytest.mark.parametrize("spec", PERCENT_SPECS)
def test_every_percent_format_with_a_huge_width_or_precision_is_refused(spec: str) -> None:
    star = spec.count("*")
    value = "1.5" if spec[-1] in "fe" else "65" if spec[-1] in "dxc" else "vin"
    arguments = ", ".join([HUGE] * star + [value])
    assert_refused(f"{{{{ '{spec}' % ({arguments},) }}}}")
    assert_refused(f"{{{{ '{spec}' | format({arguments}) }}}}")
    if not star:
        keyed = spec.replace("%", "%(v)", 1)
        assert_refused(f"{{{{ '{keyed}' % {{'v': {value}}} }}}}")
        assert_refused(f"{{{{ '{keyed}' | format(v={value}) }}}}")
        assert_refused(f"{{{{ 'prefix %% {spec} %%' % {value} }}}}")


FORMAT_SPECS = [
    f"{fill}{align}{sign}{zero}{width}{grouping}{precision}{kind}"
    for fill, align in (("", ""), ("", ">"), ("", "<"), ("", "^"), ("x", "^"), ("0", "="), ("9", ">"))
    for sign, zero in (("", ""), ("+", ""), ("", "0"))
    for width, precision in ((HUGE, ""), ("", f".{HUGE}"), ("3", f".{HUGE}"))
    for grouping in ("", ",")
    for kind in ("", "f")
    if not (grouping and not kind)
]


@pytest.mark.parametrize("spec", FORMAT_SPECS)
def test_every_brace_format_with_a_huge_width_or_precision_is_refused(spec: str) -> None:
    value = "1.5" if spec.endswith("f") or "," in spec or "=" in spec else "vin"
    for source in (
        f"{{{{ '{{:{spec}}}'.format({value}) }}}}",
        f"{{{{ '{{0:{spec}}}'.format({value}) }}}}",
        f"{{{{ 'a{{v:{spec}}}b'.format(v={value}) }}}}",
        f"{{{{ '{{v:{spec}}}'.format_map({{'v': {value}}}) }}}}",
        f"{{{{ ('{{:{spec}}}' | e).format({value}) }}}}",
    ):
        assert_refused(source)


@pytest.mark.parametrize(
    "source",
    [
        f"{{{{ '{{0:{{1}}}}'.format(vin, {HUGE}) }}}}",
        f"{{{{ '{{0:>{{1}}}}'.format(vin, {HUGE}) }}}}",
        f"{{{{ '{{0:.{{1}}f}}'.format(1.5, {HUGE}) }}}}",
        f"{{{{ '{{0!r:>{HUGE}}}'.format(vin) }}}}",
        f"{{{{ '{{0!a:{HUGE}}}'.format(vin) }}}}",
        "{{ '{0!r}'.format([('x' * 4000)]) }}",
        "{{ ('{0}{0}' * 600).format('x' * 100) }}",
    ],
)
def test_nested_and_converted_brace_formats_are_refused(source: str) -> None:
    assert_refused(source)


# --- operators


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 10**9 }}",
        "{{ vin * 100000 }}",
        "{{ 100000 * vin }}",
        "{{ [vin] * 10**8 }}",
        "{{ (vin,) * 10**8 }}",
        "{{ [vin] * 300 }}",  # 300 references to one string are 300 copies once joined or printed
        "{{ ('x' * 4000) + ('x' * 4000) }}",
        "{{ [('x' * 4000)] + [('x' * 4000)] }}",
        "{{ (vin | e) * 100000 }}",
        "{{ 9 ** 999 }}",
        "{{ (10**1200) * (10**1200) }}",
    ],
)
def test_operators_are_bounded(source: str) -> None:
    assert_refused(source)


# --- every filter

FILTER_VALUES = ["vin", "images", "extra", "('a\nb c ' * 200)", "'%999999999s'"]
FILTER_ARGUMENTS = [
    "",
    f"({HUGE})",
    f"({HUGE}, 'x')",
    "('x' * 4000)",
    "('', 'x' * 4000)",
    "('a', 'x' * 4000)",
    "(1, True, 'x' * 4000)",
    "(4000, 'x' * 4000)",
    "(None, False, 'x' * 4000, 'x' * 4000)",
    f"(indent={HUGE})",
    "(end='x' * 4000)",
    "(start=[vin] * 200)",
]


@pytest.mark.parametrize("name", sorted(NameTemplate("{{ vin }}")._template.environment.filters))
def test_no_filter_builds_a_large_value(name: str) -> None:
    before = copy.deepcopy(CONTEXT)
    for value, arguments in itertools.product(FILTER_VALUES, FILTER_ARGUMENTS):
        assert_bounded(f"{{{{ {value} | {name}{arguments} | string }}}}")
    assert before == CONTEXT  # and the record is as it was (Jinja's indent extends a list it is given)


def test_every_filter_has_a_size_rule() -> None:
    from jinja2.defaults import DEFAULT_FILTERS

    assert set(DEFAULT_FILTERS) | {"safe_name"} == set(sandbox._FILTER_SIZES)


# --- what names need still works


@pytest.mark.parametrize(
    "source, expected",
    [
        ("{{ vin.lower() }}_{{ '{:02d}'.format(n) }}", "wvwzzz1jzxw000001_03"),
        ("{{ '%05d' % n }}-{{ '%s-%s' % (make, model) }}", "00003-Volkswagen-Golf"),
        ("{{ '%(v)s' | format(v=make) }}", "Volkswagen"),
        ("{{ '-'.join([make, model]) }}", "Volkswagen-Golf"),
        ("{{ processed_at.split('T')[0] }}", "2026-11-20"),
        ("{{ extra.get('dealer_code', 'none') }}/{{ extra.get('branch', 'none') }}", "ACM01/none"),
        ("{{ make.ljust(12, '_') }}|{{ '7'.zfill(4) }}|{{ 'ab'.center(6, '-') }}", "Volkswagen__|0007|--ab--"),
        ("{{ images | length }}-{{ images | map('upper') | join('+') }}", "3-01.JPG+02.JPG+03.PNG"),
        ("{{ user.name | replace(' ', '_') | lower }}", "jeanne_dupont"),
        ("{{ '{a}-{b:>3}'.format(a=make, b=n) }}", "Volkswagen-  3"),
        ("{{ '{v[dealer_code]}'.format_map({'v': extra}) }}", "ACM01"),
        ("{{ images | batch(2) | list | length }}:{{ images | first }}", "2:01.jpg"),
        ("{{ (vin * 2) | truncate(20, True, '') }}", "WVWZZZ1JZXW000001WVW"),
        ("{{ extra.items() | list | length }}", "1"),
        ("{{ make.upper().startswith('VOLKS') }}", "True"),
        ("{{ ('x' * 4000) | length }}", "4000"),
    ],
)
def test_ordinary_templates_work(source: str, expected: str) -> None:
    result, _ = attempt(source)
    assert result == expected


def test_a_large_record_field_can_still_be_cut_down() -> None:
    context = {**CONTEXT, "description": "word " * 100_000}

    assert attempt("{{ description[:9] | safe_name }}", context)[0] == "word word"
    assert attempt("{{ description | truncate(9, True, '') }}", context)[0] == "word word"
    assert attempt("{{ description | safe_name }}", context)[0] == ("word " * 20).strip()


def test_a_render_past_its_deadline_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_SECONDS", -1.0)  # every step is past the deadline

    result, _ = attempt("{{ vin.lower() }}")

    assert isinstance(result, NamingError)
    assert "the template took over" in result.reason
