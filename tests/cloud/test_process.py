"""CloudServerProcess: the real ``python -m specedge serve`` as a child process, started and cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from specedge.cloud.process import CloudServerProcess, ParentWatch, read_request_log
from specedge.edge.cloud_client import CloudClient
from specedge.errors import CloudError, ConfigError
from specedge.models import build_classifier, save_artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    return save_artifact(tmp_path_factory.mktemp("models") / "master", classifier, dataset={}, metrics={})


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_serves_and_cleans_up(artifact: Path, rng: np.random.Generator) -> None:
    with CloudServerProcess([artifact]) as cloud:
        pid, temp_dir, log_path = cloud.pid, cloud.temp_dir, cloud.request_log_path
        assert pid is not None and temp_dir is not None and log_path is not None
        assert cloud.target.startswith("127.0.0.1:")
        with CloudClient(cloud.target, model_name="master") as client:
            client.wait_until_ready(30)
            for i in range(3):
                client.infer(rng.integers(0, 256, (i + 1, 1, 8, 8), dtype=np.uint8), request_id=f"esc-{i}")
        # the log is readable while the server runs
        assert [(e.request_id, e.batch_size) for e in cloud.request_log()] == [(f"esc-{i}", i + 1) for i in range(3)]
        assert read_request_log(log_path) == cloud.request_log()
    assert cloud.returncode == 0  # SIGTERM -> graceful stop -> exit code 0
    assert _gone(pid)
    assert not temp_dir.exists()
    assert [e.request_id for e in cloud.final_request_log] == ["esc-0", "esc-1", "esc-2"]
    with pytest.raises(CloudError, match="not running"):
        _ = cloud.target


def test_cleans_up_when_the_body_raises(artifact: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "kept" / "requests.jsonl"
    with (
        pytest.raises(KeyboardInterrupt),
        CloudServerProcess([artifact], request_log_path=log_path) as cloud,
    ):
        pid, temp_dir = cloud.pid, cloud.temp_dir
        raise KeyboardInterrupt  # Ctrl-C in the demo
    assert pid is not None and _gone(pid)
    assert temp_dir is not None and not temp_dir.exists()
    assert log_path.exists()  # a caller-chosen log is the caller's to keep


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter: ignores its arguments and runs ``body``."""
    script = tmp_path / "python"
    script.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def test_child_that_dies_reports_its_stderr(tmp_path: Path) -> None:
    python = _fake_python(
        tmp_path, "print('line 1\\nspecedge serve: error: bad artifact', file=sys.stderr)\nsys.exit(1)"
    )
    expected = r"exited with code 1 before serving; last lines of its stderr:\nline 1\nspecedge serve: error: bad"
    cloud = CloudServerProcess([tmp_path], python=python)
    with pytest.raises(CloudError, match=expected), cloud:
        pass
    assert cloud.pid is None and cloud.temp_dir is None


def test_child_that_never_binds_times_out(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, "print('stuck', file=sys.stderr, flush=True)\ntime.sleep(60)")
    cloud = CloudServerProcess([tmp_path], python=python, startup_timeout_s=0.5, stop_timeout_s=5)
    with pytest.raises(CloudError, match=r"did not start serving within 0\.5 s(.|\n)*stuck"):
        cloud.start()
    assert cloud.pid is None and cloud.temp_dir is None


def test_constructor_validates() -> None:
    with pytest.raises(ConfigError, match="at least one model"):
        CloudServerProcess([])


_PARENT = """
import sys, time
from pathlib import Path
from specedge.cloud.process import CloudServerProcess
cloud = CloudServerProcess([Path(sys.argv[1])]).start()
print(cloud.pid, cloud.temp_dir, cloud.port, flush=True)
time.sleep(600)
"""


def _gone_or_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited; reaping is init's job
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_server_dies_with_its_parent(artifact: Path, tmp_path: Path, sig: int) -> None:
    """Kill the parent however (SIGKILL runs no cleanup at all): its server child stops within seconds."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(artifact)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, f"the parent exited with {parent.wait()} before starting the server"
        pid_text, temp_dir, port = line.split()
        child = int(pid_text)
        with CloudClient(f"127.0.0.1:{port}", model_name="master") as client:
            client.wait_until_ready(30)
        parent.send_signal(sig)
        parent.wait(10)
        # Within a few seconds: the watch notices at once (PR_SET_PDEATHSIG) or within 0.5 s, then the
        # server drains (2 s grace) and exits; on a loaded 2-core CI machine that can take several seconds.
        deadline = time.monotonic() + 15
        while not _gone_or_zombie(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone_or_zombie(child), f"server {child} outlived its parent by 15 s"
        while Path(temp_dir).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(temp_dir).exists()  # the orphan removed the dead parent's temporary folder
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_parent_watch_refuses_a_dead_parent() -> None:
    watch = ParentWatch(os.getppid())
    assert not watch.orphaned
    unrelated = ParentWatch(os.getpid())  # not our parent: as if the parent had died and we were re-parented
    assert unrelated.orphaned  # start() would return False (not called here: it arms prctl on pytest itself)
    with pytest.raises(ConfigError, match="parent_pid must be a process id >= 1"):
        ParentWatch(0)
