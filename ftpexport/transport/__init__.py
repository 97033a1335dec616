"""Transports by URL scheme, imported lazily so that an FTP-only run never imports paramiko."""

from __future__ import annotations

import importlib

from .base import Capabilities, Endpoint, Transport, Upload, upload_file

__all__ = ["SCHEMES", "Capabilities", "Endpoint", "Transport", "Upload", "open_transport", "upload_file"]

#: scheme -> "module:class"
SCHEMES: dict[str, str] = {
    "ftp": "ftpexport.transport.ftp:FTPTransport",
    "ftps": "ftpexport.transport.ftp:FTPTransport",
    "ftps+implicit": "ftpexport.transport.ftp:FTPTransport",
    "sftp": "ftpexport.transport.sftp:SFTPTransport",
}


def transport_class(scheme: str) -> type[Transport]:
    """The transport class for a URL scheme."""
    module_name, _, class_name = SCHEMES[scheme].partition(":")
    if scheme == "sftp":
        from . import ssh_library

        ssh_library.load()  # paramiko without the half of its import we never use
    return getattr(importlib.import_module(module_name), class_name)


def open_transport(endpoint: Endpoint) -> Transport:
    """A new, not yet connected transport for ``endpoint``; use it as a context manager."""
    return transport_class(endpoint.scheme)(endpoint)
