"""A peer of ``bench consume`` that is missing, broken or hung is reported with its
reason and skipped, and its worker does not outlive it; the other systems still run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from worker.bench.peers import Peer, run_peer


def fake_peer(tmp_path: Path, body: str) -> Peer:
    """A peer whose "virtualenv" is this interpreter and whose script is ``body``."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    script = tmp_path / "peer_baseline.py"
    script.write_text(body)
    return Peer("fake", venv, script)


def test_a_missing_virtualenv_is_skipped_with_how_to_make_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    peer = Peer("celery", tmp_path / ".venv-bench-celery", tmp_path / "celery_baseline.py")

    assert run_peer(peer, "redis://127.0.0.1:1", ["--mode", "throughput"]) is None
    err = capsys.readouterr().err
    assert "celery skipped" in err
    assert "scripts/setup --bench" in err


def test_a_failing_peer_is_skipped_with_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    peer = fake_peer(tmp_path, "import sys\nsys.exit('broker refused the connection')\n")

    assert run_peer(peer, "redis://127.0.0.1:1", ["--mode", "latency"]) is None
    err = capsys.readouterr().err
    assert "fake skipped (--mode latency)" in err
    assert "exit 1: broker refused the connection" in err


def test_a_peer_printing_its_result_returns_it(tmp_path: Path) -> None:
    peer = fake_peer(tmp_path, "print('warming up')\nprint('{\"achieved_rate\": 999.5}')\n")

    assert run_peer(peer, "redis://127.0.0.1:1", []) == {"achieved_rate": 999.5}


def test_a_hung_peer_is_stopped_at_its_deadline_and_stops_its_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid_file = tmp_path / "worker.pid"
    peer = fake_peer(
        tmp_path,
        f"""
import signal, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open({str(pid_file)!r}, "w").write(str(worker.pid))
def stop(*_):
    worker.terminate()
    sys.exit("stopped")
signal.signal(signal.SIGTERM, stop)
time.sleep(600)
""",
    )
    started = time.monotonic()

    assert run_peer(peer, "redis://127.0.0.1:1", [], timeout_s=2) is None

    assert time.monotonic() - started < 30
    assert "took over 2 s" in capsys.readouterr().err
    worker_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its dead parent's init) counts as gone.
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
