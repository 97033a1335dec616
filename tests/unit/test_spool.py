"""spool.py: a record's package is built once, ahead of its first job but never more than ``ahead``
waiting, shared by its destinations and deleted when no job needs it."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import eventually

from ftpexport import spool as spool_module
from ftpexport.errors import NamingError, RecordError, StateError
from ftpexport.package import Artifact, Package
from ftpexport.spool import SharedPackages

DEADLINE = 10.0


class Builder:
    """Builds a one-file package (a real file in the folder given); counts the builds of each plan."""

    def __init__(self) -> None:
        self.built: list[str] = []
        self.lock = threading.Lock()
        self.fail: set[str] = set()

    def __call__(self, plan: str, folder: Path) -> Package:
        if plan in self.fail:
            raise NamingError(plan, "archive_name renders to nothing")
        path = folder / f"{plan}.zip"
        path.write_bytes(plan.encode())
        with self.lock:
            self.built.append(plan)
        return Package(files=(Artifact(path.name, path.stat().st_size, lambda: path.open("rb")),), done_marker=None)


def _content(package: Package) -> bytes:
    with package.files[0].open() as stream:
        return stream.read()


@pytest.fixture
def builder() -> Builder:
    return Builder()


@pytest.fixture
def spool(tmp_path: Path, builder: Builder) -> Iterator[SharedPackages[str]]:
    packages: SharedPackages[str] = SharedPackages(tmp_path, builder, lambda plan: f"/inbox/{plan}", ahead=2)
    yield packages
    packages.close()


def test_packages_are_built_ahead_in_order_but_at_most_two_waiting(
    spool: SharedPackages[str], builder: Builder, tmp_path: Path
) -> None:
    plans = ["a", "b", "c", "d"]
    for plan in plans:
        spool.expect(plan, jobs=1)
    eventually(lambda: builder.built == ["a", "b"], "a and b built ahead", timeout=DEADLINE)
    time.sleep(0.3)  # room for a wrong third build ahead
    assert builder.built == ["a", "b"]

    package = spool.get("a")  # taken: its slot goes to the next one
    assert _content(package) == b"a"
    eventually(lambda: builder.built == ["a", "b", "c"], "c built ahead once a was taken", timeout=DEADLINE)
    spool.put("a", attempted=True, first=True, finished=True)
    assert not list(tmp_path.rglob("a.zip")), "the files of a finished package stay"

    for plan in ["b", "c", "d"]:
        assert _content(spool.get(plan)) == plan.encode()
        spool.put(plan, attempted=True, first=True, finished=True)
    assert sorted(builder.built) == plans, "a package was built twice"


def test_one_package_serves_every_destination_of_a_record(spool: SharedPackages[str], builder: Builder) -> None:
    spool.expect("a", jobs=3)
    first = spool.get("a")
    assert spool.get("a") is first and spool.get("a") is first
    for _ in range(3):
        spool.put("a", attempted=True, first=True, finished=True)
    assert builder.built == ["a"]


def test_a_package_never_taken_frees_its_place_for_the_next(spool: SharedPackages[str], builder: Builder) -> None:
    for plan in ["a", "b", "c"]:
        spool.expect(plan, jobs=1)
    eventually(lambda: builder.built == ["a", "b"], "a and b built ahead", timeout=DEADLINE)
    spool.put("a", attempted=False, first=True, finished=True)  # its job was deferred (shutdown, paused)
    eventually(lambda: builder.built == ["a", "b", "c"], "c built ahead once a was dropped", timeout=DEADLINE)


def test_a_build_error_reaches_each_job(spool: SharedPackages[str], builder: Builder) -> None:
    builder.fail.add("bad")
    spool.expect("bad", jobs=2)
    for _ in range(2):
        with pytest.raises(NamingError, match="renders to nothing"):
            spool.get("bad")


def test_without_a_builder_the_job_builds(tmp_path: Path, builder: Builder) -> None:
    packages: SharedPackages[str] = SharedPackages(tmp_path, builder, str, ahead=0)
    packages.expect("a", jobs=1)
    time.sleep(0.1)
    assert builder.built == []
    assert packages.get("a").files[0].size == 1
    assert builder.built == ["a"]
    packages.close()


@pytest.mark.parametrize(
    ("code", "expected"),
    [(errno.ENOSPC, StateError), (errno.EDQUOT, StateError), (errno.EROFS, StateError), (errno.EACCES, RecordError)],
)
def test_a_full_spool_is_a_state_error_and_gives_its_space_back(
    tmp_path: Path, code: int, expected: type[Exception]
) -> None:
    spool_root = tmp_path / "ledger.sqlite3.spool"
    work = spool_root / "ftpexport-x"

    def build(plan: str, folder: Path) -> Package:
        (folder / f"{plan}.zip").write_bytes(b"half a zip")
        raise OSError(code, os.strerror(code))

    packages: SharedPackages[str] = SharedPackages(work, build, lambda plan: f"/inbox/{plan}", ahead=0)
    packages.expect("veh-1", jobs=1)
    with pytest.raises(expected) as caught:
        packages.get("veh-1")
    packages.close()
    if expected is StateError:
        # the disk, not the record: named with the spool, and what to do
        assert str(caught.value).startswith(
            f"{spool_root}: cannot build the package of /inbox/veh-1: {os.strerror(code)} (free space on the disk of "
        )
        assert not list(work.rglob("*.zip"))
    else:
        assert str(caught.value) == f"/inbox/veh-1: cannot build the package: [Errno {code}] {os.strerror(code)}"


@pytest.mark.parametrize("removed", ["while the retry builds", "after the retry built"])
def test_the_files_a_job_drops_are_never_those_a_retry_builds_meanwhile(
    tmp_path: Path, builder: Builder, monkeypatch: pytest.MonkeyPatch, removed: str
) -> None:
    """Two destinations of a record: one fails (a retry is due), the other is delivered and drops the
    package's files, as no job needs them now; the retry, starting at that moment, builds the package
    again. The files dropped are the old build's, not the retry's: the files of one package were
    removed under the other's build, which failed ("cannot build the package: [Errno 2] No such file
    or directory", parked at once instead of retried) or left a package without its files."""
    removal: list[Callable[[], None]] = []

    def build(plan: str, folder: Path) -> Package:
        if removed == "while the retry builds" and removal:
            removal.pop()()  # the drop's removal lands between the retry's folder and its files
        return builder(plan, folder)

    packages: SharedPackages[str] = SharedPackages(tmp_path, build, lambda plan: f"/inbox/{plan}", ahead=0)
    packages.expect("a", jobs=2)
    packages.get("a")
    packages.get("a")
    packages.put("a", attempted=True, first=True, finished=False)  # dms failed: retried later
    retried: list[Package] = []
    rmtree = shutil.rmtree

    def removing(path: Path, *args: Any, **kwargs: Any) -> None:
        # the drop is decided; before its files are removed, the retry takes the package
        removal.append(lambda: rmtree(path, *args, **kwargs))
        retried.append(packages.get("a"))
        if removal:
            removal.pop()()

    monkeypatch.setattr(spool_module.shutil, "rmtree", removing)
    packages.put("a", attempted=True, first=True, finished=True)  # backup delivered: drops the files
    monkeypatch.undo()

    [package] = retried
    assert _content(package) == b"a"
    assert builder.built == ["a", "a"]
    packages.put("a", attempted=True, first=False, finished=True)
    assert not list(tmp_path.rglob("a.zip")), "the files of a finished package stay"
    packages.close()


def test_a_package_built_ahead_for_a_record_whose_jobs_all_ended_meanwhile_leaves_no_files(
    tmp_path: Path, builder: Builder
) -> None:
    """The builder thread builds a package while every job of its record ends without an attempt
    (deferred at shutdown): the files it then writes are removed, not left in the spool."""
    building, go_on = threading.Event(), threading.Event()

    def build(plan: str, folder: Path) -> Package:
        building.set()
        assert go_on.wait(DEADLINE)
        return builder(plan, folder)

    packages: SharedPackages[str] = SharedPackages(tmp_path, build, lambda plan: f"/inbox/{plan}", ahead=1)
    packages.expect("a", jobs=1)
    assert building.wait(DEADLINE)
    packages.put("a", attempted=False, first=True, finished=True)  # its job was deferred
    go_on.set()
    packages.close()  # waits for the build under way
    assert builder.built == ["a"]
    assert not list(tmp_path.rglob("a.zip")), "the files of a package no job needs stay"


def test_the_builder_does_not_build_for_a_record_whose_jobs_had_their_first_attempt_meanwhile(
    tmp_path: Path, builder: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder thread picks a record, then waits for its build lock; meanwhile the record's one job
    builds the package itself, fails its first attempt and waits for a retry (the files are dropped:
    a retry long after builds them again). The builder must not build them again now: they would stay
    in the spool, and hold one of the ``ahead`` places, until the retry (minutes, for a destination
    that is down)."""
    picked, go_on = threading.Event(), threading.Event()

    class GatedLock:
        """The entry's build lock; the builder thread stops at it until ``go_on``."""

        def __init__(self) -> None:
            self._lock = threading.Lock()

        def __enter__(self) -> GatedLock:
            if threading.current_thread().name == "ftpexport-packager":
                picked.set()
                assert go_on.wait(DEADLINE)
            self._lock.acquire()
            return self

        def __exit__(self, *exc: object) -> None:
            self._lock.release()

    @dataclasses.dataclass
    class GatedEntry(spool_module._Entry):  # type: ignore[type-arg]
        build_lock: Any = dataclasses.field(default_factory=GatedLock)

    monkeypatch.setattr(spool_module, "_Entry", GatedEntry)
    packages: SharedPackages[str] = SharedPackages(tmp_path, builder, lambda plan: f"/inbox/{plan}", ahead=1)
    packages.expect("a", jobs=1)
    assert picked.wait(DEADLINE)
    assert _content(packages.get("a")) == b"a"  # the job builds it: the builder has not
    packages.put("a", attempted=True, first=True, finished=False)  # failed: a retry is due later
    go_on.set()
    packages.close()  # waits for the builder's decision

    assert builder.built == ["a"], "the builder built a package no job was waiting for"
    assert not list(tmp_path.rglob("a.zip")), "the files of a package no job needs stay"
