"""The benchmark's scenarios and what they measure (``benchmarks.export``): the tools, a scenario,
a measure, the payload and the context the runs share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from servers import RunningServer

from .common import REPO, Inbox

TOOLS = ("ftpexport", "before", "bare", "sftp-b", "rclone", "lftp")
TOOL_TITLES = {
    "ftpexport": "ftpexport",
    "before": "ftpexport before",  # ``--before PATH``: another checkout, interleaved with this one
    "bare": "bare client",  # benchmarks/bare_client.py: paramiko / ftplib alone
    "sftp-b": "sftp -b",
    "rclone": "rclone copy",
    "lftp": "lftp mirror -R",
}
#: the tools that run by default (``before`` needs ``--before``)
DEFAULT_TOOLS = ("ftpexport", "bare", "sftp-b", "rclone", "lftp")
BARE_CLIENT = Path(__file__).resolve().with_name("bare_client.py")
WAN_HOST = "127.0.0.2"
RUN_TIMEOUT = 900.0
CLIENT_ID = "bench"
TARGET = "run"  # the folder every run writes into, under the server's login folder


@dataclass(frozen=True)
class Scenario:
    net: str  # "loopback" | "wan"
    protocol: str  # "sftp" | "ftp" | "ftps"
    layout: str  # "zip" | "files"
    tool: str  # one of TOOLS
    conns: int

    @property
    def row(self) -> tuple[str, str, str, int]:
        return (self.net, self.protocol, self.layout, self.conns)

    def __str__(self) -> str:
        return f"{self.net}/{self.protocol}/{self.layout}/{self.tool}x{self.conns}"


@dataclass
class Measure:
    seconds: float
    cpu: float  # user + system seconds of the client process tree
    ok: bool
    note: str = ""


@dataclass
class Payload:
    """The bytes of one set of runs: the inbox and the zips ftpexport's packager makes of it."""

    inbox: Inbox
    zips: Path
    zip_count: int = 0
    zip_bytes: int = 0

    def source(self, layout: str) -> tuple[Path, int, int]:
        """(local folder the reference tools upload, files, bytes)."""
        if layout == "zip":
            return self.zips, self.zip_count, self.zip_bytes
        return self.inbox.path, self.inbox.files, self.inbox.bytes


@dataclass
class Context:
    """What the runs need: payloads, servers, where clients connect, scratch folders."""

    work: Path
    payloads: dict[str, Payload] = field(default_factory=dict)  # per net
    servers: dict[str, RunningServer] = field(default_factory=dict)  # "sftp" / "ftp" (FTP and FTPS)
    #: where clients connect: (host, port) per protocol; the WAN proxy for the WAN scenarios
    address: dict[str, tuple[str, int]] = field(default_factory=dict)
    rclone_config: Path | None = None
    #: the folder holding the ``ftpexport`` package to run (this checkout, or a copy with a change to try)
    ftpexport_path: Path = REPO
    #: the checkout the ``before`` tool runs (``--before``)
    before_path: Path | None = None
    counter: int = 0

    def ftpexport_env(self, path: Path | None = None) -> dict[str, str]:
        folder = str(path or self.ftpexport_path)
        return {"PYTHONPATH": os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))}

    def scratch(self, name: str) -> Path:
        self.counter += 1
        path = self.work / "runs" / f"{self.counter:05d}-{name}"
        path.mkdir(parents=True)
        return path


# --- scenarios


def scenarios(
    only: set[str],
    conns_list: tuple[int, ...],
    wan_conns: tuple[int, ...],
    wan_loose_x1: bool,
    layouts: tuple[str, ...],
) -> list[Scenario]:
    """Every run of one repeat, in the order they run."""
    chosen = []
    for protocol in ("sftp", "ftp", "ftps"):
        if protocol not in only:
            continue
        for layout in layouts:
            for conns in conns_list:
                for tool in TOOLS:
                    if tool == "sftp-b" and (protocol != "sftp" or conns != 1):
                        continue  # sftp -b is one SFTP connection
                    chosen.append(Scenario("loopback", protocol, layout, tool, conns))
    if "wan" in only:
        for protocol in ("sftp", "ftp"):
            for layout in layouts:
                for conns in wan_conns:
                    if conns == 1 and layout == "files" and not wan_loose_x1:
                        continue  # one file after the other at 50 ms a round trip: slow, and nobody's target
                    for tool in TOOLS:
                        if tool == "sftp-b" and (protocol != "sftp" or conns != 1):
                            continue
                        if tool in ("bare", "rclone", "lftp") and conns == 1 and 4 in wan_conns:
                            continue  # the WAN targets compare 4 connections
                        chosen.append(Scenario("wan", protocol, layout, tool, conns))
    return chosen
