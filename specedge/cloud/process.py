"""Run the cloud server as a separate OS process (``python -m specedge serve``), for demos and tests.

:class:`CloudServerProcess` starts the child with ``--port 0 --port-file TMP``, waits until the
child has bound and written its port (or has died, in which case the error quotes its stderr),
and on exit (normal, exception or Ctrl-C) sends SIGTERM, waits for the graceful stop, kills the
child if it hangs, and removes its temporary files. The child's request log (JSON lines) can be
read while it runs, which is how the demo shows that exactly the escalated inputs reached the
cloud.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import specedge
from specedge.cloud.request_log import RequestLogEntry, read_request_log
from specedge.errors import CloudError, ConfigError

__all__ = ["CloudServerProcess", "read_request_log"]

_STDERR_TAIL_LINES = 20
_POLL_S = 0.05


class CloudServerProcess:
    """Context manager running ``python -m specedge serve`` on 127.0.0.1 and a free port.

    Args:
        models: artifact folders to serve (one ``--model`` each).
        request_log_path: where the child writes its request log; a temporary file (removed on
            exit, read into :attr:`final_request_log` first) if omitted.
        port: the port to bind; 0 (default) for a free one. A fixed port lets a restarted server
            take the place of a dead one, as the edge's failure tests need.
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
