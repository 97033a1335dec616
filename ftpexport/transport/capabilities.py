"""What a server was found to do (``ServerCapabilities``): learned by the probe, kept in the ledger.

A transport learns the cheap things when asked (``Transport.learn``: the banner, FTP's FEAT, the
SFTP extensions) and notes what it meets while working in ``Transport.known``: a rename that would
not replace a file, a rename refused, SIZE answered "not implemented". What it knows there also
decides how it works (``upload_file``, ``rename``, ``size``), within what the rule allows. A field
is None while nothing was learned of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: FEAT lines of RFC 2389 and friends -> the field that says whether the server has it
FEAT_FIELDS = {"UTF8": "utf8", "SIZE": "size", "MDTM": "mdtm", "MLST": "mlst", "REST STREAM": "rest_stream",
               "EPSV": "epsv"}  # fmt: skip

#: the SFTP extensions that change how we work, by their field
SFTP_EXTENSIONS = {"posix-rename@openssh.com": "posix_rename", "fsync@openssh.com": "fsync"}


@dataclass
class ServerCapabilities:
    """What one destination's server does, as far as known."""

    #: ``ftp`` (FTP and FTPS) or ``sftp``; None until a connection was made
    protocol: str | None = None
    #: the FTP greeting or the SSH version string
    banner: str | None = None
    # --- FTP: the FEAT lines, and the features that matter to us
    feat: list[str] | None = None
    utf8: bool | None = None
    size: bool | None = None
    mdtm: bool | None = None
    mlst: bool | None = None
    rest_stream: bool | None = None
    epsv: bool | None = None
    # --- SFTP: the protocol version, its extensions (name -> version), the ones that matter, limits
    sftp_version: int | None = None
    extensions: dict[str, str] | None = None
    posix_rename: bool | None = None
    fsync: bool | None = None
    #: limits@openssh.com: max-packet-length, max-read-length, max-write-length, max-open-handles
    limits: dict[str, int] | None = None
    # --- both
    #: a rename works at all (False: the server refuses renames)
    rename: bool | None = None
    #: a rename onto an existing file replaces it (False: the target must be deleted first)
    rename_replaces: bool | None = None
    #: sessions the server accepted at once before it refused one more (421 too many connections)
    sessions: int | None = None
    #: sessions the probe opened at once without a refusal (the bound it tried), when none was refused
    sessions_tried: int | None = None
    #: FTP: RNFR and RNTO sent in one write are both answered (False: the second was not understood,
    #: or its reply or the connection was lost; then each command waits for its reply)
    pipelining: bool | None = None
    #: MKD (mkdir) of a folder that exists fails (True on most servers); we check the folder then
    mkdir_existing_fails: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON object: the fields that are known (None ones left out), and the keys of a newer version."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **{key: value for key, value in data.items() if value is not None}}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ServerCapabilities:
        """From ``as_dict``'s object; a key this version does not know is kept aside, not refused."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        data = data or {}
        known = {key: value for key, value in data.items() if key in names}
        return cls(**known, extra={key: value for key, value in data.items() if key not in names})

    def copy(self) -> ServerCapabilities:
        return dataclasses.replace(self, feat=list(self.feat) if self.feat is not None else None,
                                   extensions=dict(self.extensions) if self.extensions is not None else None,
                                   limits=dict(self.limits) if self.limits is not None else None,
                                   extra=dict(self.extra))  # fmt: skip

    def merged(self, newer: ServerCapabilities) -> ServerCapabilities:
        """These capabilities with every field ``newer`` knows taken from it."""
        result = self.copy()
        for name, value in newer.as_dict().items():
            setattr(result, name, value)
        return result

    def learned_from_feat(self, lines: list[str]) -> None:
        """Set ``feat`` and the FTP feature fields from a FEAT reply's feature lines."""
        features = [line.strip() for line in lines if line.strip()]
        self.feat = features
        upper = [line.upper() for line in features]
        for name, attribute in FEAT_FIELDS.items():
            setattr(self, attribute, any(line == name or line.startswith(name + " ") for line in upper))

    def learned_from_extensions(self, version: int, extensions: dict[str, str]) -> None:
        """Set the SFTP fields from the server's version packet."""
        self.sftp_version = version
        self.extensions = dict(extensions)
        for name, attribute in SFTP_EXTENSIONS.items():
            setattr(self, attribute, name in extensions)


def feat_lines(reply: str) -> list[str]:
    """The feature lines of a multi-line FEAT reply (``211-Features:`` ... ``211 End``)."""
    lines = reply.splitlines()
    return [line for line in lines[1:-1] if line.startswith(" ")] if len(lines) > 2 else []
