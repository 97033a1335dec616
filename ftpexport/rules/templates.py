"""Name templates tried when rules load: each one rendered for a sample record, the README's example.

A template that the sandbox refuses (a value too large to build, a method not available), that
renders a name no server may get, or a non-portable name for a destination that needs portable
names, is an error of the rule file: it would fail for every record. A template that fails for
the sample only (a field the example does not have, a value of another type) is a warning: the
client's records may have what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError

from ..naming import NameRules, NameTemplate, name_problem, shorten

#: the example vehicle.json of the README and the product contract
SAMPLE_VEHICLE: dict[str, Any] = {
    "id": "veh-000123",
    "event": "vehicle.processed",
    "client_id": "acme-motors",
    "user": {"id": "u-42", "name": "Jeanne Dupont", "email": "jeanne@acme.example"},
    "vin": "WVWZZZ1JZXW000001",
    "stock_number": "A1234",
    "make": "Volkswagen",
    "model": "Golf",
    "year": 2021,
    "processed_at": "2026-11-20T14:03:00+01:00",
    "images": ["01.jpg", "02.jpg", "03.png"],
    "extra": {"dealer_code": "ACM01"},
}
#: what ``image_name`` sees besides the record, for each image of the sample
SAMPLE_IMAGES = [
    {"n": n, "ext": name.rsplit(".", 1)[1], "filename": name, "stem": name.rsplit(".", 1)[0]}
    for n, name in enumerate(SAMPLE_VEHICLE["images"], start=1)
]
_SAMPLE = "the sample vehicle (README: Templates)"


@dataclass(frozen=True)
class TemplateIssue:
    """A problem of one template of a rule file; ``error`` False: a warning."""

    field: str
    reason: str
    error: bool


def template_issues(rules: Any) -> list[TemplateIssue]:
    """Render every name template of ``rules`` (a ``ClientRules``) for the sample record; what is
    wrong with them."""
    issues: list[TemplateIssue] = []
    destinations = [(f"destinations[{i}]", d) for i, d in enumerate(rules.destinations)]
    destinations += [
        (f"users.{user_id}.destinations[{i}]", d)
        for user_id, user in rules.users.items()
        for i, d in enumerate(user.destinations)
    ]
    portable = [d.name for _, d in destinations if d.names == "portable"]
    package = rules.package
    templates: list[tuple[str, NameTemplate | None, list[dict[str, Any]]]] = [
        ("package.image_name", package.image_name, [{**SAMPLE_VEHICLE, **image} for image in SAMPLE_IMAGES]),
        ("package.archive_name", package.archive_name if package.format == "zip" else None, [SAMPLE_VEHICLE]),
        ("package.metadata.name", package.metadata.name if package.metadata else None, [SAMPLE_VEHICLE]),
        ("package.done_marker", package.done_marker, [SAMPLE_VEHICLE]),
    ]
    for field, template, contexts in templates:
        names: list[str] = []
        for context in contexts if template is not None else []:
            name = _try(template, field, context, issues, "posix")  # type: ignore[arg-type]
            if name is None:
                break
            names.append(name)
        else:
            if template is not None:
                _check_package_names(template, field, names, portable, issues)
    for where, destination in destinations:
        if destination.remote_dir is not None:
            _try(destination.remote_dir, f"{where}.remote_dir", SAMPLE_VEHICLE, issues, destination.names)
    return issues


def _try(
    template: NameTemplate, field: str, context: dict[str, Any], issues: list[TemplateIssue], names: NameRules
) -> str | None:
    """The name ``template`` renders for ``context``, or None with its issue added to ``issues``."""
    source = repr(template.source)
    try:
        rendered = template.evaluate(context)
    except SecurityError as exc:
        issues.append(TemplateIssue(field, f"template {source} cannot be rendered: {exc.message}", True))
        return None
    except Exception as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {shorten(str(exc))}"
        if field != "package.image_name" and _renders_with_image(template, context):
            reason = f"template {source} uses n, ext, filename or stem, which only package.image_name has"
            issues.append(TemplateIssue(field, reason, True))
        else:
            reason = f"template {source} fails for {_SAMPLE}: {message}; records like it will be refused"
            issues.append(TemplateIssue(field, reason, False))
        return None
    problem = name_problem(rendered, template.kind, names)
    if problem:
        hint = "use the safe_name filter for record fields" if names == "posix" else (
            "use safe_name, or set names: posix on this destination if its server is POSIX-only"
        )  # fmt: skip
        issues.append(TemplateIssue(field, f"template {source} renders {shorten(rendered)} for {_SAMPLE}, "
                                           f"which {problem}: {hint}", True))  # fmt: skip
        return None
    return rendered


def _renders_with_image(template: NameTemplate, context: dict[str, Any]) -> bool:
    try:
        template.evaluate({**context, **SAMPLE_IMAGES[0]})
    except Exception:
        return False
    return True


def _check_package_names(
    template: NameTemplate, field: str, names: list[str], portable: list[str], issues: list[TemplateIssue]
) -> None:
    """The package's names are shared by all destinations: each must be portable if one destination
    needs portable names, and the images' names must differ."""
    source = repr(template.source)
    for name in names:
        problem = name_problem(name, "file", "portable")
        if problem and portable:
            issues.append(TemplateIssue(
                field,
                f"template {source} renders {shorten(name)} for {_SAMPLE}, which {problem}; "
                f"{_needing(portable)} portable names: use safe_name, or set names: posix on a destination "
                "whose server is POSIX-only",
                True,
            ))  # fmt: skip
            return
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        issues.append(TemplateIssue(
            field,
            f"template {source} gives two images of {_SAMPLE} the same name {shorten(twice)}: use n (the "
            "image's position), e.g. {{ vin }}_{{ n }}.{{ ext }}",
            True,
        ))  # fmt: skip


def _needing(destinations: list[str]) -> str:
    if len(destinations) == 1:
        return f"destination {destinations[0]} needs"
    return f"destinations {', '.join(destinations)} need"
