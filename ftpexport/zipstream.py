"""A record's zip read as a stream, straight from its images: no copy in the spool.

The zip ``package.write_zip`` writes is stored (not deflated) and deterministic, so every byte of
it is known before it is built once each image's size and CRC-32 are: the record's reader
computes the CRC-32 while it hashes (``record.Image.crc``). ``ZipLayout`` lays the archive out
(headers, where each image goes, the central directory) with ``zipfile``'s own header code, so
that the bytes are the ones ``write_zip`` writes, and ``ZipStream`` reads them: the headers from
memory, each image from its file, opened again only if it is the file that was hashed
(``open_image``).

The stream computes each image's CRC-32 on the way and refuses to go past the end of an image
unless it is the one taken when the record was read (``Image.crc``, the one the archive's headers
carry): a file written in place since it was read (same size and times) fails the read before any
byte after that image, so the archive is never complete. Its reader must not publish what it read
before the end all the same: it is for atomic uploads only (temporary name, size check, rename),
where a failed transfer leaves at most a hidden temporary file.

On a plain socket (FTP without TLS) ``ZipStream.send_to`` sends the archive instead: the headers
from memory, each image with ``sendfile`` from its file, so that its bytes never pass through
Python. Those bytes are not seen, so each image is checked after it is sent by what its file looks
like (``Identity``: the same file, same size, modification and change times), before any byte of
the next part: a write to it, in place or not, changes its change time (which no program can set
back); only a write in the same tick of the file system's clock as the record's read would go
unseen there, a window Linux 6.13 and later close on ext4, XFS, Btrfs and tmpfs (multigrain
timestamps: a file whose times were read gets a fine-grained time at its next change).
"""

from __future__ import annotations

import io
import socket
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from .errors import RecordChangedError
from .record import Image, Record, check_image, open_image
from .recordfiles import changed
from .transport.sendfile import send_file


def crc_changed(record: Record, image: Image, crc: int) -> RecordChangedError | None:
    """The error for ``image`` when ``crc``, the CRC-32 of the bytes just read from it, is not the one
    taken when the record was read (``Image.crc``, which it must have); None when it is."""
    assert image.crc is not None
    if crc == image.crc:
        return None
    detail = f"its bytes are not the ones read: CRC-32 {crc:08x}, {image.crc:08x} when the record was read"
    return changed(str(record.folder), f"image {image.path.name!r}", detail)


@dataclass(frozen=True)
class _Part:
    """A piece of the archive: bytes held in memory, or an image read from its file."""

    data: bytes = b""
    image: Image | None = None

    @property
    def size(self) -> int:
        return self.image.size if self.image is not None else len(self.data)


class _Sink:
    """Where ``zipfile`` writes the central directory: it counts from ``start`` (the archive's offset)."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.chunks: list[bytes] = []
        self.position = start

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset != self.position:
            raise OSError("the central directory is written in one go")
        return self.position

    def flush(self) -> None:
        pass


class ZipLayout:
    """Every byte of the zip of ``record`` but the images', and where they go.

    ``entries`` are (info, image or in-memory content) in archive order, each ``info`` a ``ZipInfo``
    as ``package._zip_entry`` makes it; every image must have its CRC-32 (``Image.crc``).
    """

    def __init__(self, entries: Sequence[tuple[zipfile.ZipInfo, Image | bytes]]) -> None:
        parts: list[_Part] = []
        infos = []
        offset = 0
        for info, content in entries:
            size = content.size if isinstance(content, Image) else len(content)
            crc = content.crc if isinstance(content, Image) else zipfile.crc32(content)
            if crc is None:
                raise ValueError(f"no CRC-32 for {info.filename!r}")
            # what ZipFile.open(info, "w") and its close() leave in ``info``, on a seekable file
            info.flag_bits = 0
            info.header_offset = offset
            info.CRC = crc
            info.compress_size = info.file_size = size
            header = info.FileHeader(size * 1.05 > zipfile.ZIP64_LIMIT)
            parts.append(_Part(header))
            parts.append(_Part(image=content) if isinstance(content, Image) else _Part(content))
            infos.append(info)
            offset += len(header) + size
        sink = _Sink(offset)
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
            archive.filelist.extend(infos)
        parts.append(_Part(b"".join(sink.chunks)))
        self.parts = tuple(parts)
        self.size = sum(part.size for part in parts)


class ZipStream(io.RawIOBase):
    """The zip of ``layout`` read from the start; each image's CRC-32 computed on the way and checked.

    Raises ``RecordChangedError`` when opened if an image is not the file that was read (another
    file, or written since as its size and times show); from ``read`` if that happens later, if an
    image has another size, or (once an image is read, before any byte after it) if its CRC-32 is
    not the one taken when the record was read.
    """

    def __init__(self, record: Record, layout: ZipLayout) -> None:
        super().__init__()
        for image in record.images:
            # each image checked now, before the transfer starts: a file replaced or written since it
            # was read (what its size and times show) fails the upload before the server gets a byte
            check_image(record, image)
        self._record = record
        self._parts = layout.parts
        self._index = 0
        self._offset = 0  # within the current part
        self._file: BinaryIO | None = None
        self._crc = 0  # of the current image's bytes read so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` as far as the archive goes (a short read only at its end)."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._index < len(self._parts):
            part = self._parts[self._index]
            left = part.size - self._offset
            if left == 0:
                self._next_part(part)
                continue
            want = min(left, len(view) - filled)
            target = view[filled : filled + want]
            if part.image is None:
                target[:] = part.data[self._offset : self._offset + want]
                n = want
            else:
                n = self._read_image(part.image, target)
            self._offset += n
            filled += n
        return filled

    def _read_image(self, image: Image, view: memoryview) -> int:
        if self._file is None:
            self._file = open_image(self._record, image)
            self._crc = 0
        n = self._file.readinto(view) or 0
        if not n:
            raise changed(str(self._record.folder), f"image {image.path.name!r}", "its size changed")
        self._crc = zlib.crc32(view[:n], self._crc)  # without the GIL, unlike binascii's: see record._read_image
        return n

    def _next_part(self, part: _Part) -> None:
        """``part`` is read whole: an image's file must end there, with the CRC-32 it had when it was read.

        Called before any byte of the next part is returned: an image that is not what was read
        stops the archive at its end.
        """
        if part.image is not None:
            if self._file is None:  # an empty image: opened for its check all the same
                self._file = open_image(self._record, part.image)
                self._crc = 0
            try:
                more = self._file.read(1)
            finally:
                self._file.close()
                self._file = None
            if more:
                raise changed(str(self._record.folder), f"image {part.image.path.name!r}", "its size changed")
            if (error := crc_changed(self._record, part.image, self._crc)) is not None:
                raise error
        self._index += 1
        self._offset = 0

    def send_to(self, conn: socket.socket, callback: Callable[[int], None] | None, block: int) -> int:
        """Send the whole archive over ``conn``, a plain (not TLS) socket; return the bytes sent.

        The headers go from memory, each image with ``sendfile`` from its file in ``block``-byte
        pieces (``callback`` told each piece's size). Each image is opened when its turn comes
        (``open_image``) and checked once it is sent: ``RecordChangedError`` before any byte of the
        next part if it is not the file that was read, as its size and times show (see the module
        docstring). The stream must not have been read from.
        """
        if self._index or self._offset:
            raise ValueError("send_to sends a whole archive: this one was read from already")
        more = getattr(socket, "MSG_MORE", 0)  # Linux: a header goes out with the bytes behind it
        sent = 0
        for part in self._parts:
            if part.image is not None:
                sent += self._sendfile(conn, part.image, callback, block)
            elif part.data:
                conn.sendall(part.data, more)
                sent += len(part.data)
                if callback is not None:
                    callback(len(part.data))
            self._index += 1
        return sent

    def _sendfile(self, conn: socket.socket, image: Image, callback: Callable[[int], None] | None, block: int) -> int:
        """``image`` sent whole with ``sendfile``, then checked: still the file that was read, unchanged."""
        where, name = str(self._record.folder), f"image {image.path.name!r}"
        with open_image(self._record, image) as file:
            sent = send_file(conn, file.fileno(), 0, image.size, callback, block)
            if sent < image.size:  # the file ends before the size it had when the record was read
                raise changed(where, name, "its size changed")
            file.verify()
        return sent

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()
