"""A loopback TCP proxy the tests can break: hold traffic, or cut it off and refuse new
connections, then restore it. It runs its own event loop in a thread, so a test that blocks
(or a sync client going through it) never stalls the proxy.

    with TcpProxy(target_port=5432) as proxy:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/db"
        proxy.cut()      # open connections reset, new ones refused
        proxy.restore()
        proxy.hold()     # connections stay open, no byte goes through
        proxy.release()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from types import TracebackType

CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        # Set: bytes flow. Cleared by `hold`.
        self._flowing: asyncio.Event | None = None
        self.connections_accepted = 0
        # Chunks read while held and not yet passed on: something is waiting on the far side.
        self.chunks_held = 0

    # --- controls (from any thread) -------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until `restore`."""
        self._call(self._cut)

    def restore(self) -> None:
        self._call(self._restore)

    def hold(self) -> None:
        """Keep connections open but pass no byte until `release`."""
        self._call(self._set_flowing, False)

    def release(self) -> None:
        self._call(self._set_flowing, True)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start)
        return self

    def stop(self) -> None:
        self._call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- on the proxy's loop --------------------------------------------------------------

    def _call(self, function: object, *args: object) -> None:
        async def run() -> None:
            result = function(*args)  # type: ignore[operator]
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, sock=self._listener)

    async def _stop(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _cut(self) -> None:
        self._refusing = True
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    def _restore(self) -> None:
        self._refusing = False

    def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self._refusing:
            _reset(client)
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(client)
            return
        self.connections_accepted += 1
        self._writers.update((client, upstream))
        await asyncio.gather(
            self._pipe(client_reader, upstream),
            self._pipe(upstream_reader, client),
            return_exceptions=True,
        )
        for writer in (client, upstream):
            self._writers.discard(writer)
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(CHUNK):
                if not self._flowing.is_set():
                    self.chunks_held += 1
                    await self._flowing.wait()
                    self.chunks_held -= 1
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: the peer sees the connection break, as in an outage."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
