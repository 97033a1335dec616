"""A TCP proxy that makes loopback look like a WAN link: a fixed delay each way and a TCP-like window.

    python -m benchmarks.wanproxy --listen 127.0.0.2 --target 127.0.0.1 --ports 2222,30000-30063 \
        --delay 0.025 --window 4194304

Each listening port ``listen:p`` forwards to ``target:p``. Bytes read on one side are written to the
other ``delay`` seconds later; at most ``window`` bytes per direction are "on the wire" at once,
and a byte's room in the window comes back ``2 * delay`` after it was read (its ACK travels back),
so one connection moves at most ``window / (2 * delay)`` bytes per second, like TCP with that
window and round trip time (without slow start or loss). A new connection costs one round trip
before the server sees it. Used where tc netem is not available (the kernel has no sch_netem).

Several ports and a second loopback address let FTP data connections pass the proxy too: the FTP
server announces ``listen`` as its PASV address and a fixed passive port range, proxied 1:1.
Prints ``ready`` on stdout once every port listens; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys

READ_SIZE = 256 * 1024


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Direction:
    """One direction of one connection: read, hold for ``delay``, write; at most ``window`` in flight."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, window: int) -> None:
        self.reader, self.writer, self.delay, self.window = reader, writer, delay, window
        self.in_flight = 0
        self.room = asyncio.Event()
        self.room.set()
        self.queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    def _release(self, n: int) -> None:
        self.in_flight -= n
        self.room.set()

    async def pump(self) -> None:
        loop = asyncio.get_running_loop()
        writing = asyncio.create_task(self._write())
        try:
            while True:
                while self.in_flight >= self.window:
                    self.room.clear()
                    await self.room.wait()
                data = await self.reader.read(min(READ_SIZE, self.window - self.in_flight))
                now = loop.time()
                if not data:
                    self.queue.put_nowait((now + self.delay, None))
                    break
                self.in_flight += len(data)
                loop.call_later(2 * self.delay, self._release, len(data))
                self.queue.put_nowait((now + self.delay, data))
        except (ConnectionError, OSError):
            self.queue.put_nowait((0.0, None))
        await writing

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await self.queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    return
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, OSError):
            return


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: str,
    port: int,
    delay: float,
    window: int,
) -> None:
    _nodelay(client_writer)
    try:
        await asyncio.sleep(2 * delay)  # the TCP handshake's round trip
        server_reader, server_writer = await asyncio.open_connection(target, port)
    except OSError:
        client_writer.close()
        return
    _nodelay(server_writer)
    try:
        await asyncio.gather(
            _Direction(client_reader, server_writer, delay, window).pump(),
            _Direction(server_reader, client_writer, delay, window).pump(),
        )
    finally:
        for writer in (client_writer, server_writer):
            with contextlib.suppress(Exception):
                writer.close()


def parse_ports(text: str) -> list[int]:
    ports: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        ports.extend(range(int(first), int(last or first) + 1))
    return ports


async def serve(listen: str, target: str, ports: list[int], delay: float, window: int) -> None:
    servers = []
    for port in ports:

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, p: int = port) -> None:
            await _handle(r, w, target, p, delay, window)

        servers.append(await asyncio.start_server(handler, listen, port, reuse_address=True, backlog=256))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    # connections still open are cut with the process; no orderly shutdown of their tasks
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.2")
    parser.add_argument("--target", default="127.0.0.1")
    parser.add_argument("--ports", required=True, help="e.g. 2222,30000-30063")
    parser.add_argument("--delay", type=float, default=0.025, help="seconds each way")
    parser.add_argument("--window", type=int, default=4 * 1024 * 1024, help="bytes in flight per direction")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target, parse_ports(args.ports), args.delay, args.window))


if __name__ == "__main__":
    main()
