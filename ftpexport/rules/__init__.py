"""Rule files: one YAML file per client, validated with pydantic, and routing (user beats client).

model.py (the pydantic models), fields.py (the field types they are built of), load.py (reading
and validating files, a folder as a RuleSet), hints.py (what to say about an unknown key),
templates.py (the name templates tried on a sample vehicle), routing.py (which destinations a
record goes to), check.py (what ``check`` warns about), reload.py (the daemon's rules reloaded
when a file changes).
"""

from __future__ import annotations

from .check import rule_warnings, secret_references
from .load import RULE_SUFFIXES, RuleFileError, RuleSet, load_rule_file, load_rules, read_rule_file
from .model import (
    DEFAULT_METADATA_FIELDS,
    ClientRules,
    Destination,
    Destinations,
    DirTemplate,
    FileTemplate,
    FTPDestination,
    MetadataSpec,
    NotifyEvent,
    NotifySpec,
    PackageSpec,
    SecretReference,
    SFTPDestination,
    UploadSpec,
    UserRules,
)
from .reload import RulesReloader
from .routing import Route, client_routes, routes_for

__all__ = [
    "DEFAULT_METADATA_FIELDS",
    "RULE_SUFFIXES",
    "ClientRules",
    "Destination",
    "Destinations",
    "DirTemplate",
    "FTPDestination",
    "FileTemplate",
    "MetadataSpec",
    "NotifyEvent",
    "NotifySpec",
    "PackageSpec",
    "Route",
    "RuleFileError",
    "RuleSet",
    "RulesReloader",
    "SFTPDestination",
    "SecretReference",
    "UploadSpec",
    "UserRules",
    "client_routes",
    "load_rule_file",
    "load_rules",
    "read_rule_file",
    "routes_for",
    "rule_warnings",
    "secret_references",
]
