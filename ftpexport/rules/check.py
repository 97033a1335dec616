"""What ``check`` tells about a valid rule file: the risks it accepts on purpose, and where its
secret references are."""

from __future__ import annotations

from ..secret import SecretRef
from ..transport import ssh_policy
from .model import ClientRules, FTPDestination, SFTPDestination
from .templates import template_issues


def rule_warnings(rules: ClientRules) -> list[str]:
    """Risks a valid rule file accepts on purpose, worth telling the operator about."""
    destinations = [(None, d) for d in rules.destinations]
    destinations += [(user_id, d) for user_id, user in rules.users.items() for d in user.destinations]
    warnings = []
    for user_id, d in destinations:
        name = f"destination {d.name}{f' (user {user_id})' if user_id else ''}"
        if d.scheme == "ftp":
            warnings.append(f"{name} uses plain FTP: password and photos cross the network unencrypted")
        if isinstance(d, FTPDestination):
            files = [d.ca_file, d.client_cert, d.client_key_file]
        else:
            files = [d.key_file, d.known_hosts]
        warnings += [f"{name}: file {path} does not exist (yet)" for path in files if path and not path.exists()]
        if isinstance(d, SFTPDestination):
            warnings += [f"{name}: {ssh_policy.legacy_warning(a)}" for a in d.ssh_legacy_algorithms]
    warnings += [f"{i.field}: {i.reason}" for i in template_issues(rules) if not i.error]
    if rules.notify is not None:
        if rules.notify.allow_private:
            warnings.append("notify: allow_private is set: the webhook may go to private and loopback addresses")
        ca_file = rules.notify.ca_file
        if ca_file is not None and not ca_file.exists():
            warnings.append(f"notify: file {ca_file} does not exist (yet)")
    return warnings



def secret_references(rules: ClientRules) -> list[tuple[str, SecretRef]]:
    """Every secret reference of a client's rules, with where it is (``destination dms: password``)."""
    found = []
    destinations = [(None, d) for d in rules.destinations]
    destinations += [(user_id, d) for user_id, user in rules.users.items() for d in user.destinations]
    for user_id, d in destinations:
        name = f"destination {d.name}{f' (user {user_id})' if user_id else ''}"
        for field_name in ("password", "private_key", "key_passphrase", "client_key", "client_key_passphrase"):
            ref = getattr(d, field_name, None)
            if ref is not None:
                found.append((f"{name}: {field_name}", ref))
    if rules.notify is not None:
        found.append(("notify: secret", rules.notify.secret))
    return found
