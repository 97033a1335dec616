"""What to say about an unknown key in a rule file: the nearest valid key, or where the key belongs.

Pydantic reports ``extra_forbidden`` with the key's location (``destinations, 0, ftp, host_key``);
the rule models say which keys are valid there, for the other protocol, and elsewhere in the file.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag

#: the schemes each destination model serves, for "applies to ... destinations only"
_SCHEMES = {"ftp": "ftp://, ftps:// and ftps+implicit://", "sftp": "sftp://"}
#: FTP-model keys that serve only some of its schemes
_TLS = "ftps:// and ftps+implicit://"
_KEY_SCHEMES = {
    "ca_file": _TLS,
    "client_cert": _TLS,
    "client_key_file": _TLS,
    "client_key": _TLS,
    "client_key_passphrase": _TLS,
    "allow_plain_ftp": "ftp://",
}


def _members(annotation: Any) -> list[tuple[str | None, Any]]:
    """The types a value of ``annotation`` may have, each with its union tag (``ftp``, ``sftp``) if any."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = get_args(annotation)
        tag = next((m.tag for m in metadata if isinstance(m, Tag)), None)
        return [(tag or member_tag, member) for member_tag, member in _members(inner)]
    if origin is Union or origin is types.UnionType:
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [] if annotation is type(None) else [(None, annotation)]


def _step(annotation: Any, item: int | str) -> Any:
    """The type found at ``item`` (a field, an index, a mapping key or a union tag) of an ``annotation``."""
    members = _members(annotation)
    for tag, member in members:
        if len(members) > 1 and tag == item:
            return member
    for _tag, member in members:
        if _is_model(member) and isinstance(item, str) and item in member.model_fields:
            return member.model_fields[item].annotation
        if get_origin(member) is list and isinstance(item, int):
            return get_args(member)[0]
        if get_origin(member) is dict and isinstance(item, str):
            return get_args(member)[1]
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, str | None]:
    """The model that holds the last key of ``loc``, and the union tag that chose it."""
    annotation: Any = root
    tag = None
    for item in loc:
        members = _members(annotation)
        if len(members) > 1 and any(t == item for t, _ in members):
            tag = str(item)
        annotation = _step(annotation, item)
        if annotation is None:
            return None, None
    models = [m for _, m in _members(annotation) if _is_model(m)]
    return (models[0] if len(models) == 1 else None), tag


def _places(root: type[BaseModel]) -> dict[str, list[str]]:
    """Each key of the rule file, with where it may be written (``package``, ``destinations[]``, ...)."""
    places: dict[str, list[str]] = {}

    def walk(annotation: Any, where: str) -> None:
        for _tag, member in _members(annotation):
            if _is_model(member):
                for key, info in member.model_fields.items():
                    spot = where or "the top level"
                    if spot not in places.setdefault(key, []):
                        places[key].append(spot)
                    walk(info.annotation, f"{where}.{key}" if where else key)
            elif get_origin(member) is list:
                walk(get_args(member)[0], f"{where}[]")
            elif get_origin(member) is dict:
                walk(get_args(member)[1], f"{where}.ID")

    walk(root, "")
    return places


def _value_at(document: Any, loc: tuple[int | str, ...]) -> Any:
    """The part of the YAML document at ``loc`` (union tags, which the document does not have, skipped)."""
    for item in loc:
        in_list = isinstance(document, list) and isinstance(item, int) and 0 <= item < len(document)
        if in_list or (isinstance(document, dict) and item in document):
            document = document[item]
        elif not (isinstance(item, str) and item in _SCHEMES):
            return None
    return document


def unknown_key_reason(root: type[BaseModel], loc: tuple[int | str, ...], document: Any) -> str:
    """Why the key at ``loc`` is refused, and what the user probably meant."""
    key = str(loc[-1])
    model, tag = _model_at(root, loc[:-1])
    if model is None:
        return "unknown key: check its spelling against the rule file guide in the README"
    valid = list(model.model_fields)
    if tag in _SCHEMES:
        for other, schemes in _SCHEMES.items():
            other_model = _model_at(root, (*loc[:-2], other))[0]
            if other != tag and other_model is not None and key in other_model.model_fields:
                url = _value_at(document, (*loc[:-1], "url"))
                scheme = url.split("://", 1)[0] + "://" if isinstance(url, str) and "://" in url else None
                this = f" (this destination's url is {scheme})" if scheme else ""
                applies = _KEY_SCHEMES.get(key, schemes)
                return f"{key} applies to {applies} destinations only{this}: remove it or change the url"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key: did you mean {close[0]!r}?"
    elsewhere = _places(root).get(key)
    if elsewhere:
        return f"unknown key here: {key} belongs under {' or '.join(elsewhere)}"
    return f"unknown key: the keys here are {', '.join(valid)}"
