"""Run the cloud server as a separate OS process (``python -m specedge serve``), for demos and tests.

:class:`CloudServerProcess` starts the child with ``--port 0 --port-file TMP``, waits until the
child has bound and written its port (or has died, in which case the error quotes its stderr),
and on exit (normal, exception or Ctrl-C) sends SIGTERM, waits for the graceful stop, kills the
child if it hangs, and removes its temporary files. The child's request log (JSON lines) can be
read while it runs, which is how the demo shows that exactly the escalated inputs reached the
cloud.

The child dies with its parent, however the parent dies (SIGKILL included, when no ``__exit__``
runs): it is started with ``--parent-pid``, and :class:`ParentWatch` (run by ``specedge serve``)
asks Linux to signal it when the parent dies (``prctl(PR_SET_PDEATHSIG)``) and, on every
platform, polls ``os.getppid()`` from a watchdog thread. Either way the child stops gracefully
and, orphaned, removes the parent's temporary folder (``--remove-when-orphaned``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil

import specedge
from specedge.cloud.request_log import RequestLogEntry, read_request_log
from specedge.errors import CloudError, ConfigError

__all__ = ["CloudServerProcess", "ParentWatch", "read_request_log"]

_log = logging.getLogger(__name__)

_STDERR_TAIL_LINES = 20
_POLL_S = 0.05
_PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_DEATH_SIGNAL = signal.SIGHUP  # what Linux sends the server when its parent dies: "the other end hung up"
_CONFIRM_POLL_S = 0.02
_CONFIRM_S = 2.0


class CloudServerProcess:
    """Context manager running ``python -m specedge serve`` on 127.0.0.1 and a free port.

    Args:
        models: artifact folders to serve (one ``--model`` each).
        request_log_path: where the child writes its request log; a temporary file (removed on
            exit, read into :attr:`final_request_log` first) if omitted.
        port: the port to bind; 0 (default) for a free one. A fixed port lets a restarted server
            take the place of a dead one, as the edge's failure tests need.
        server_args: more ``specedge serve`` flags, e.g. ``["--max-batch", "32", "--max-delay-us", "500"]``.
        startup_timeout_s: how long to wait for the child to bind its port.
        stop_timeout_s: how long SIGTERM may take before the child is killed.
        python: the interpreter that runs the child.
    """

    def __init__(
        self,
        models: Sequence[Path],
        *,
        request_log_path: Path | None = None,
        port: int = 0,
        server_args: Sequence[str] = (),
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        python: str = sys.executable,
    ) -> None:
        if not models:
            raise ConfigError("CloudServerProcess needs at least one model artifact folder")
        if startup_timeout_s <= 0 or stop_timeout_s <= 0:
            raise ConfigError(f"timeouts must be > 0 seconds; got startup {startup_timeout_s}, stop {stop_timeout_s}")
        if not 0 <= port <= 65535:
            raise ConfigError(f"port must be in 0..65535; got {port}")
        self.models = [Path(m) for m in models]
        self._bind_port = port
        self.server_args = list(server_args)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.python = python
        self._own_log = request_log_path is None
        self._given_log = Path(request_log_path) if request_log_path is not None else None
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.port: int | None = None
        self.request_log_path: Path | None = self._given_log
        self.returncode: int | None = None
        self.final_request_log: list[RequestLogEntry] = []

    # --- public surface ------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """``"127.0.0.1:PORT"`` for :class:`~specedge.edge.cloud_client.CloudClient`."""
        if self.port is None:
            raise CloudError("the cloud server process is not running; use it as a context manager")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def temp_dir(self) -> Path | None:
        """The folder holding the port file, captured output and (by default) the request log."""
        return self._tmp

    def request_log(self) -> list[RequestLogEntry]:
        """The child's request log so far (complete lines only)."""
        if self.request_log_path is None:
            return []
        return read_request_log(self.request_log_path)

    def start(self) -> CloudServerProcess:
        """Spawn the child and wait until it serves; CloudError (with its stderr) if it does not."""
        if self._proc is not None:
            raise CloudError("the cloud server process is already running")
        self._tmp = Path(tempfile.mkdtemp(prefix="specedge-cloud-"))
        try:
            self._spawn()
            self.port = self._wait_for_port()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """SIGTERM, wait, kill if needed, remove temp files; returns the child's exit code."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
        for stream in (self._stdout, self._stderr):
            if stream is not None:
                stream.close()
        self._stdout = self._stderr = None
        if self._tmp is not None:
            if self._own_log and self.request_log_path is not None:
                self.final_request_log = read_request_log(self.request_log_path)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            if self._own_log:
                self.request_log_path = None
        self.port = None
        return self.returncode

    def __enter__(self) -> CloudServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        assert self._tmp is not None
        self.request_log_path = self._given_log or self._tmp / "requests.jsonl"
        command = [self.python, "-m", "specedge", "serve"]
        for model in self.models:
            command += ["--model", str(model)]
        command += [
            "--host", "127.0.0.1",
            "--port", str(self._bind_port),
            "--port-file", str(self._port_file),
            "--request-log", str(self.request_log_path),
            "--parent-pid", str(os.getpid()),
            "--remove-when-orphaned", str(self._tmp),
            *self.server_args,
        ]  # fmt: skip
        self._stdout = (self._tmp / "stdout.log").open("wb")
        self._stderr = (self._tmp / "stderr.log").open("wb")
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            env=_child_env(),
            start_new_session=True,  # Ctrl-C reaches the parent only; its __exit__ stops the child
        )

    @property
    def _port_file(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "port"

    def _wait_for_port(self) -> int:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self._port_file.exists():  # written atomically by the child after binding
                text = self._port_file.read_text(encoding="utf-8").strip()
                try:
                    return int(text)
                except ValueError:
                    raise CloudError(f"cloud server wrote an invalid port file: {text!r}") from None
            code = self._proc.poll()
            if code is not None:
                raise CloudError(
                    f"cloud server process exited with code {code} before serving; "
                    f"last lines of its stderr:\n{self._stderr_tail()}"
                )
            if time.monotonic() > deadline:
                raise CloudError(
                    f"cloud server process did not start serving within {self.startup_timeout_s:g} s; "
                    f"last lines of its stderr:\n{self._stderr_tail()}"
                )
            time.sleep(_POLL_S)

    def _stderr_tail(self) -> str:
        if self._tmp is None:
            return ""
        try:
            text = (self._tmp / "stderr.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = text.rstrip().splitlines()[-_STDERR_TAIL_LINES:]
        return "\n".join(lines) if lines else "(empty)"


class ParentWatch:
    """Call ``on_orphaned`` (default: SIGTERM to this process) once the process ``parent_pid`` has died.

    A daemon thread polls ``os.getppid()`` every ``poll_s`` seconds (a dead parent's children are
    re-parented). On Linux the kernel also sends SIGHUP the moment the parent dies
    (``prctl(PR_SET_PDEATHSIG)``); that only wakes the watchdog to confirm the death (parent gone
    or a zombie), because Linux sends it when the parent *thread* that forked this process exits,
    which a living parent may do, and once per thread of a dying multi-threaded parent.
    """

    def __init__(
        self,
        parent_pid: int,
        *,
        on_orphaned: Callable[[], None] | None = None,
        poll_s: float = _PARENT_POLL_S,
    ) -> None:
        if parent_pid < 1:
            raise ConfigError(f"parent_pid must be a process id >= 1; got {parent_pid}")
        self.parent_pid = parent_pid
        self.poll_s = poll_s
        self._on_orphaned = on_orphaned or _terminate_self
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._died = False

    @property
    def orphaned(self) -> bool:
        """Whether the parent has died (seen by the watchdog, or this process was re-parented)."""
        return self._died or os.getppid() != self.parent_pid

    def start(self) -> bool:
        """Arm the death signal and start the watchdog (main thread only); False if the parent is gone."""
        signal.signal(_DEATH_SIGNAL, lambda signum, frame: self._wake.set())
        _set_parent_death_signal(_DEATH_SIGNAL)
        if self._parent_dead():  # died before the signal was armed: it will never come
            self._died = True
            return False
        threading.Thread(target=self._watch, name="specedge-parent-watch", daemon=True).start()
        return True

    def stop(self) -> None:
        """Disarm the death signal and end the watchdog (main thread only)."""
        _set_parent_death_signal(0)
        # A dying multi-threaded parent may have queued more death signals; ignored at the OS level,
        # they cannot kill the interpreter as it shuts down (which restores default handlers).
        signal.signal(_DEATH_SIGNAL, signal.SIG_IGN)
        self._stop.set()
        self._wake.set()

    def _parent_dead(self) -> bool:
        if os.getppid() != self.parent_pid:
            return True
        try:
            return bool(psutil.Process(self.parent_pid).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True

    def _watch(self) -> None:
        confirm_until = 0.0
        while not self._stop.is_set():
            if self._wake.wait(_CONFIRM_POLL_S if time.monotonic() < confirm_until else self.poll_s):
                self._wake.clear()
                confirm_until = time.monotonic() + _CONFIRM_S  # a death signal: look closely for a while
            if self._stop.is_set():
                return
            if self._parent_dead():
                self._died = True
                _log.warning("parent process %d died; stopping", self.parent_pid)
                self._on_orphaned()
                return


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _set_parent_death_signal(sig: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, sig)`` on Linux; nothing elsewhere (the watchdog thread covers it)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            _log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        _log.warning("prctl is unavailable (%s); relying on the parent watchdog thread", exc)


def _child_env() -> dict[str, str]:
    """The parent's environment, with this SpecEdge checkout first on PYTHONPATH.

    So the child runs the same ``specedge`` as the parent, whatever its working directory and
    whether or not the package is installed.
    """
    env = dict(os.environ)
    root = str(Path(specedge.__file__).resolve().parent.parent)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root + (os.pathsep + existing if existing else "")
    return env
