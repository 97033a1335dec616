"""The FTP control connection's reply reader (``transport/ftp_clients.reply_reader``): a code page's
bytes shown, not failed on, and bytes read before the reader existed read first."""

from __future__ import annotations

import socket

from ftpexport.transport.ftp_clients import reply_reader


def test_bytes_read_early_come_before_the_rest_of_the_connection() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"lo\r\n230 in\r\n")
        reader = reply_reader(ours, "utf-8", b"220 hel")

        assert reader.readline() == "220 hello\n"
        assert reader.readline() == "230 in\n"


def test_a_byte_of_another_code_page_is_replaced_with_or_without_early_bytes() -> None:
    for early in (b"", b"220 "):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            theirs.sendall(b"" if early else b"220 ")
            theirs.sendall(b"Bienvenue \xe0 bord\r\n")
            reader = reply_reader(ours, "utf-8", early)

            assert reader.readline() == "220 Bienvenue \ufffd bord\n"
