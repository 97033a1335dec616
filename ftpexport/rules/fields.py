"""The building blocks of the rule models: the strict base model, name-template and secret-reference fields.

Templates are compiled and secret references parsed when a rule file loads; paths a rule file names
are made relative to its folder (``_relative_to_rule_file``, with the ``base_dir`` of the load's context).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, ValidationInfo

from ..naming import NameTemplate
from ..secret import SecretRef, parse_ref


def _template(kind: Literal["file", "dir"]) -> Any:
    def validate(value: Any) -> NameTemplate:
        if isinstance(value, NameTemplate):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a template string")
        return NameTemplate(value, kind)

    return Annotated[NameTemplate, PlainValidator(validate), PlainSerializer(str)]


def _secret_ref(value: Any) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a reference like ${ACME_DMS_PASSWORD}")
    return parse_ref(value)


FileTemplate = _template("file")
DirTemplate = _template("dir")
SecretReference = Annotated[SecretRef, PlainValidator(_secret_ref), PlainSerializer(str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _relative_to_rule_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Paths in a rule file are relative to the rule file's folder."""
    if value is None or value.is_absolute():
        return value
    base = (info.context or {}).get("base_dir")
    return Path(base) / value if base else value
