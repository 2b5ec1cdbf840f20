"""A TCP proxy on loopback that imposes a simulator link on real bytes.

The edge connects to :attr:`LinkEmulator.target` instead of the cloud; every accepted connection
gets its own upstream connection to the real server, and bytes are forwarded both ways at the times
:mod:`specedge.emulator.shaping` computes from a :class:`~specedge.simulator.links.LinkProfile`
(client -> server on ``link.uplink``, server -> client on ``link.downlink``, half the RTT each way).
Both directions' schedulers are shared by all connections: they model one radio link, so parallel
connections queue behind each other as on the real link. A live run through the emulator can then
be compared with the simulator's prediction for the same link (issue 9, item 10).

What is emulated, beyond the channel model:

* **TCP handshake**: the kernel accepts a connection at once, so the SYN / SYN-ACK round trip the
  simulator charges (:attr:`ConnectionProfile.handshake_rtts
  <specedge.simulator.links.ConnectionProfile.handshake_rtts>`, TCP's part) would be missing; with
  ``tcp_handshake=True`` a connection's first uplink bytes wait until one RTT after it was accepted.
  TLS handshakes are real bytes and pay their own way.
* **Backpressure**: each direction of a connection holds at most ``_QUEUE_SEGMENTS`` segments
  waiting for their delivery time; beyond that the proxy stops reading and TCP pushes back on the
  sender, as a full bottleneck buffer would.
* **Granularity**: bytes are read and delivered in segments of at most ``_SEGMENT_BYTES``, so a
  large message streams through (its last byte arrives when the simulator says) instead of being
  held whole.

Not emulated: loss, reordering, the handshake's bytes on the channel, and per-packet headers (the
simulator adds those to message sizes; here the channel sees payload bytes only).

Why asyncio in one background thread (rather than threads and heapq timers): one thread serves
every connection, delivery times become the event loop's own timers (``asyncio.sleep`` on a heap,
no busy-waiting), half-close and backpressure come with ``StreamReader``/``StreamWriter``, and since
only the loop thread touches the schedulers they need no lock. ``stop()`` asks the loop to close
everything and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import TracebackType

from specedge.emulator.shaping import DirectionScheduler, RadioWakeup
from specedge.errors import ConfigError
from specedge.simulator.links import LinkProfile

__all__ = ["EmulatorStats", "LinkEmulator", "parse_address"]

logger = logging.getLogger(__name__)

_SEGMENT_BYTES = 16 * 1024  # read/deliver unit: fine enough to stream, coarse enough to keep timers few
_QUEUE_SEGMENTS = 64  # per direction and connection: 1 MiB in flight before TCP backpressure
_CONNECT_TIMEOUT_S = 10.0  # opening the upstream connection
_START_TIMEOUT_S = 10.0  # waiting for the listening socket
_STOP_TIMEOUT_S = 1.0  # joining the loop thread


@dataclass(frozen=True)
class EmulatorStats:
    """Counters since the emulator started; bytes and chunks count what was delivered."""

    connections: int  # accepted from clients
    failed_connections: int  # accepted, but the target could not be reached
    open_connections: int
    bytes_up: int  # client -> server
    bytes_down: int  # server -> client
    chunks_up: int
    chunks_down: int
    promotions: int  # radio promotions paid (0 unless radio_promotion)


def parse_address(text: str, what: str = "address") -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) as ``(host, port)``; ConfigError naming ``text`` otherwise."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT with a port in 1..65535, e.g. 127.0.0.1:8001")
    return host, int(port_text)


class LinkEmulator:
    """Forward TCP connections to ``target`` through an emulated link; a context manager.

    Args:
        target: ``"host:port"`` of the real server (kept as :attr:`upstream`).
        link: the link to impose, e.g. ``get_link_profile("lte")`` or
            :func:`~specedge.emulator.links.resolve_link`'s answer for a trace.
        listen_host: address to listen on (loopback by default: the emulator is a test tool).
        listen_port: port to listen on; 0 picks a free one (read it from :attr:`target`).
        radio_promotion: charge the radio's promotion delay after idle gaps (see
            :class:`~specedge.emulator.shaping.RadioWakeup`).
        tcp_handshake: hold a connection's first uplink bytes until one RTT after it was accepted.
        clock: seconds, ticking in real time (``time.monotonic`` or a shifted copy); the link's
            time 0 (a trace's start) is when :meth:`start` is called.
    """

    def __init__(
        self,
        target: str,
        link: LinkProfile,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        radio_promotion: bool = False,
        tcp_handshake: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream_host, self._upstream_port = parse_address(target, "target")
        if not isinstance(link, LinkProfile):
            raise ConfigError(f"link must be a LinkProfile (e.g. get_link_profile('lte')); got {type(link).__name__}")
        if not (isinstance(listen_port, int) and 0 <= listen_port <= 65535):
            raise ConfigError(f"listen_port must be an integer in 0..65535 (0 picks a free one); got {listen_port!r}")
        if not listen_host:
            raise ConfigError("listen_host must be a host name or address, e.g. 127.0.0.1; got an empty string")
        self.upstream = target
        self.link = link
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.radio_promotion = radio_promotion
        self.tcp_handshake = tcp_handshake
        self.clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: OSError | None = None  # set by the loop thread if the address cannot be bound
        self._port: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._reset_state()

    def _reset_state(self) -> None:
        """Fresh schedulers and counters: the link's time 0 is the next start."""
        self._epoch_s = 0.0
        self._start_error = None
        self._radio = RadioWakeup(self.link.radio) if self.radio_promotion else None
        one_way_s = self.link.rtt_s / 2
        self._uplink = DirectionScheduler(self.link.uplink, delay_s=one_way_s, radio=self._radio)
        self._downlink = DirectionScheduler(self.link.downlink, delay_s=one_way_s, radio=self._radio)
        self._counts: dict[str, int] = {f.name: 0 for f in fields(EmulatorStats) if f.name != "promotions"}

    # --- public surface --------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """``"host:port"`` for clients to connect to instead of the server."""
        if self._port is None or self._thread is None:
            raise RuntimeError("the link emulator is not running; call start() or use it in a with block")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.listen_host, self.listen_host)
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the emulator's thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        with self._lock:
            counts = dict(self._counts)
        promotions = self._radio.promotions if self._radio is not None else 0
        return EmulatorStats(**counts, promotions=promotions)

    def start(self) -> LinkEmulator:
        """Listen and serve in a background thread; returns self. ConfigError if the address cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("the link emulator is already running")
        self._reset_state()
        self._started.clear()
        self._epoch_s = self.clock()
        self._thread = threading.Thread(target=self._run, name=f"link-emulator-{self.link.name}", daemon=True)
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"the link emulator did not start listening within {_START_TIMEOUT_S:g} s")
        if self._start_error is not None:
            error = self._start_error
            self._thread.join(_STOP_TIMEOUT_S)
            self._thread = None
            raise ConfigError(
                f"cannot listen on {self.listen_host}:{self.listen_port}: {error.strerror or error}"
            ) from error
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and join the thread (about a loop iteration)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT_S)
        if thread.is_alive():  # kept, so `running` tells the truth and start() refuses
            logger.warning("link emulator thread did not end within %g s", _STOP_TIMEOUT_S)
            return
        self._thread = None
        self._port = None

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the emulator stops (or ``timeout_s`` passes); whether it has stopped. Ctrl-C interrupts it."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return not self.running

    def __enter__(self) -> LinkEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- the event loop (its own thread) ---------------------------------------------------------

    def _now_s(self) -> float:
        return self.clock() - self._epoch_s

    def _count(self, **increments: int) -> None:
        with self._lock:
            for key, value in increments.items():
                self._counts[key] += value

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, self.listen_host, self.listen_port)
        except OSError as exc:
            self._start_error = exc
            self._started.set()
            return
        self._port = int(server.sockets[0].getsockname()[1])
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            handlers = list(self._handlers)
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """One client connection: open the upstream one, forward both ways, close both."""
        task = asyncio.current_task()
        assert task is not None  # start_server runs handlers as tasks
        self._handlers.add(task)
        opened_s = self._now_s()
        self._count(connections=1, open_connections=1)
        upstream_writer: asyncio.StreamWriter | None = None
        failed = True
        try:
            try:
                upstream_reader, opened_writer = await asyncio.wait_for(
                    asyncio.open_connection(self._upstream_host, self._upstream_port), _CONNECT_TIMEOUT_S
                )
            except (OSError, asyncio.TimeoutError) as exc:
                logger.warning("cannot reach %s (%s); closing the client's connection", self.upstream, exc)
                self._count(failed_connections=1)
                failed = False  # a plain close (FIN): the client sees the connection end, gRPC says UNAVAILABLE
                return
            upstream_writer = opened_writer
            hold_s = opened_s + self.link.rtt_s if self.tcp_handshake else -math.inf
            await self._forward(client_reader, client_writer, upstream_reader, opened_writer, hold_s)
            failed = False
        except asyncio.CancelledError:  # stop(): end quietly (asyncio logs a handler task that ends cancelled)
            pass
        except OSError as exc:  # a reset or a broken pipe on either side: reset the other one too
            logger.debug("connection through the emulator ended: %s", exc)
        except Exception:  # never let one connection take the emulator down
            logger.exception("connection through the emulator failed")
        finally:
            self._count(open_connections=-1)
            self._handlers.discard(task)
            await _close([w for w in (client_writer, upstream_writer) if w is not None], abort=failed)

    async def _forward(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
        hold_s: float,
    ) -> None:
        """Both directions until both have ended (EOF each way) or one fails (the error is raised)."""
        up: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=_QUEUE_SEGMENTS)
        down: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=_QUEUE_SEGMENTS)
        tasks = [
            asyncio.create_task(self._read(client_reader, up, self._uplink, hold_s)),
            asyncio.create_task(self._deliver(up, upstream_writer, "up")),
            asyncio.create_task(self._read(upstream_reader, down, self._downlink, -math.inf)),
            asyncio.create_task(self._deliver(down, client_writer, "down")),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for finished in done:
                finished.result()  # re-raise the first failure
        finally:
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        scheduler: DirectionScheduler,
        hold_s: float,
    ) -> None:
        """Stamp each segment read with its delivery time; an empty segment marks the end of stream."""
        while True:
            data = await reader.read(_SEGMENT_BYTES)
            arrival_s = max(self._now_s(), hold_s)
            await queue.put((scheduler.deliver_s(len(data), arrival_s), data))
            if not data:
                return

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, way: str) -> None:
        """Write each segment at its delivery time; pass the end of stream on as a half-close."""
        while True:
            deliver_s, data = await queue.get()
            wait_s = deliver_s - self._now_s()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            # Counted first, so stats() never lags what a peer has already received.
            self._count(**{f"bytes_{way}": len(data), f"chunks_{way}": 1})
            writer.write(data)
            await writer.drain()


async def _close(writers: list[asyncio.StreamWriter], *, abort: bool) -> None:
    """Close connections (reset them after a failure, so the peers notice at once), then wait until they are.

    Closing starts synchronously; the wait may be cut short by stop() cancelling the handler, and the
    transports then finish closing on the loop's next iterations, before ``asyncio.run`` closes it.
    """
    for writer in writers:
        if abort:
            writer.transport.abort()
        else:
            writer.close()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        for writer in writers:
            await writer.wait_closed()
