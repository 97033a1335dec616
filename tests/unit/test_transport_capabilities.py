"""What each transport declares it can do beyond the interface (``transport.base.Capabilities``)."""

from __future__ import annotations

from ftpexport.transport import Capabilities, Transport, transport_class


def test_the_defaults_assume_nothing_beyond_the_interface() -> None:
    assert Transport.capabilities == Capabilities(keeps_directories=False, quick_liveness=False)
    assert Transport.server_key_line is None


def test_ftp_keeps_its_folder_cache_but_must_ask_whether_it_is_alive() -> None:
    for scheme in ("ftp", "ftps", "ftps+implicit"):
        assert transport_class(scheme).capabilities == Capabilities(keeps_directories=True, quick_liveness=False)


def test_sftp_keeps_its_folder_cache_and_knows_a_dead_connection_without_asking() -> None:
    assert transport_class("sftp").capabilities == Capabilities(keeps_directories=True, quick_liveness=True)
