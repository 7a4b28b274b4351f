"""A TCP proxy between the service and PostgreSQL that a test cuts, stalls and restores.

- ``cut()``: every connection is closed at once and new ones are closed as soon as
  they are accepted (a database host gone, a firewall reset);
- ``stall()``: nothing is forwarded either way and new connections get no answer
  (a network partition: packets vanish, nothing is refused);
- ``restore()``: forwarding resumes; stalled bytes flow on;
- ``cut_at(n)``: count the statements the clients send (PostgreSQL ``Query`` and
  ``Sync`` messages, one per round trip) and close the connection that sends the
  n-th one, before it reaches the server (``after=True``: just after; the server
  runs it to its end and answers, and the answer is dropped, as when a commit's
  acknowledgement is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

_STARTUP_CODES = (80877103, 80877104)  # SSLRequest, GSSENCRequest: startup goes on
_STATEMENT_ENDS = (b"Q", b"S")


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    buffer: bytes = b""
    startup: bool = True
    last_sql: str = ""
    prepared: dict[bytes, str] = field(default_factory=dict)
    dead: bool = False
    # Cut after a statement: the client is gone; the server's answer is read to its
    # end (ReadyForQuery, sent after the commit) and dropped, then the link closes.
    lost_answer: bool = False
    answer: bytes = b""

    def answered(self, data: bytes) -> bool:
        """Whether ``data`` completes the server's answer (its ReadyForQuery message)."""
        buf = self.answer + data
        while len(buf) >= 5:
            (length,) = struct.unpack("!I", buf[1:5])
            if len(buf) < 1 + length:
                break
            if buf[:1] == b"Z":
                return True
            buf = buf[1 + length :]
        self.answer = buf
        return False

    def close(self) -> None:
        self.dead = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class PostgresProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.links: set[_Link] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.refusing = False
        self.server: asyncio.Server | None = None
        self.port = 0
        self._armed: tuple[int, bool] | None = None
        self._after = False
        self.statements = 0
        self.cut_statement: str | None = None  # the SQL the armed cut fell on

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for link in list(self.links):
            link.close()
            for task in link.tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.server is not None:
            await self.server.wait_closed()

    def cut(self) -> None:
        self.refusing = True
        self.flowing.set()
        for link in list(self.links):
            link.close()

    def stall(self) -> None:
        self.flowing.clear()

    def restore(self) -> None:
        self.refusing = False
        self._armed = None
        self.flowing.set()

    def cut_at(self, n: int, *, after: bool = False) -> None:
        """Arm: the n-th statement from now on is the last one any connection sends."""
        self.statements = 0
        self.cut_statement = None
        self._armed = (n, after)

    @property
    def fired(self) -> bool:
        return self.cut_statement is not None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        if self.refusing:
            link.close()
            return
        self.links.add(link)
        try:
            await self.flowing.wait()
            if link.dead:  # cut while it waited
                return
            up_reader, link.upstream = await asyncio.open_connection(*self.target)
            link.tasks = [
                asyncio.create_task(self._pipe(link, reader, link.upstream, upstream=True)),
                asyncio.create_task(self._pipe(link, up_reader, writer, upstream=False)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            link.close()
            self.links.discard(link)

    async def _pipe(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.flowing.wait()
                if link.dead:
                    break
                if upstream:
                    data, cut = self._count(link, data)
                    if data:
                        writer.write(data)
                        await writer.drain()
                    if cut:
                        if self._after:
                            # Closing the server's side now could race its read of
                            # the statement (a reset drops unread bytes): the other
                            # direction closes it once the answer has come.
                            link.lost_answer = True
                            link.client.transport.abort()
                        else:
                            link.close()
                        break
                elif link.lost_answer:
                    if link.answered(data):
                        break
                else:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not (upstream and link.lost_answer):
                link.close()

    def _count(self, link: _Link, data: bytes) -> tuple[bytes, bool]:
        """The bytes to forward, and whether to cut after them."""
        link.buffer += data
        out = b""
        while True:
            buf = link.buffer
            if link.startup:
                if len(buf) < 8:
                    break
                (length,) = struct.unpack("!I", buf[:4])
                if len(buf) < length:
                    break
                (code,) = struct.unpack("!I", buf[4:8])
                link.startup = code in _STARTUP_CODES
                out, link.buffer = out + buf[:length], buf[length:]
                continue
            if len(buf) < 5:
                break
            kind = buf[:1]
            (length,) = struct.unpack("!I", buf[1:5])
            if len(buf) < 1 + length:
                break
            message, link.buffer = buf[: 1 + length], buf[1 + length :]
            if kind == b"Q":
                link.last_sql = message[5:-1].decode(errors="replace")
            elif kind == b"P":
                # Parse: statement name\0 query\0 ...
                name, _, rest = message[5:].partition(b"\0")
                link.last_sql = rest.partition(b"\0")[0].decode(errors="replace")
                link.prepared[name] = link.last_sql
            elif kind == b"B":
                # Bind: portal\0 statement name\0 ...: a statement prepared earlier.
                name = message[5:].partition(b"\0")[2].partition(b"\0")[0]
                link.last_sql = link.prepared.get(name, link.last_sql)
            if kind in _STATEMENT_ENDS and self._armed is not None:
                self.statements += 1
                n, after = self._armed
                if self.statements == n:
                    self._armed = None
                    self.cut_statement = link.last_sql
                    self._after = after
                    if after:
                        out += message
                    link.buffer = b""
                    return out, True
            out += message
        return out, False
