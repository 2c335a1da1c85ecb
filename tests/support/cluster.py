"""Real control-plane processes for tests and benchmarks: `shoal controller` and hollow agent fleets.

Each harness owns exactly the process it started, kills only that pid, and reports the
process's log when it fails to start.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.api import keyspace
from controller.client import ControlClient
from controller.store.base import Store
from deploy.registry import free_port

VENV_BIN = Path(sys.executable).parent
SHOAL = str(VENV_BIN / "shoal")


class ControllerProcess:
    def __init__(self, base: Path, etcd: str, extra_args: list[str] | None = None, name: str = "") -> None:
        self.id = name or f"ctl-{uuid.uuid4().hex[:6]}"
        self.etcd = etcd
        self.port = free_port()
        self.extra_args = extra_args or []
        self.log_file = base / f"{self.id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [SHOAL, "controller", "--etcd", self.etcd, "--listen", self.target, "--id", self.id]
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen([*args, *self.extra_args], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with ControlClient(self.target, timeout=1) as client:
                    client.list_nodes()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"controller did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def client(self) -> ControlClient:
        return ControlClient(self.target)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        terminate(self.proc)

    def __enter__(self) -> ControllerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class HollowFleet:
    """`python -m agent.tasks.hollow`: `count` agents with the fake runtime in one process."""

    def __init__(
        self,
        base: Path,
        etcd: str,
        count: int,
        prefix: str,
        extra_args: list[str] | None = None,
        startup_timeout: float = 60,
    ) -> None:
        self.etcd = etcd
        self.count = count
        self.prefix = prefix
        self.extra_args = extra_args or []
        self.startup_timeout = startup_timeout
        self.log_file = base / f"hollow-{prefix}{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "agent.tasks.hollow", "--etcd", self.etcd]
        args += ["--count", str(self.count), "--prefix", self.prefix, *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log_file.open("ab"), text=True)
        assert self.proc.stdout is not None
        # The fleet prints one line once every node is registered; wait for it, its death or the deadline.
        ready, _, _ = select.select([self.proc.stdout], [], [], self.startup_timeout)
        line = self.proc.stdout.readline() if ready else ""
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"hollow fleet did not become ready ({line!r}):\n{self.log()}")

    @property
    def node_ids(self) -> list[str]:
        width = len(str(self.count))
        return [f"{self.prefix}{i:0{width}d}" for i in range(1, self.count + 1)]

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        terminate(self.proc)

    def __enter__(self) -> HollowFleet:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def terminate(proc: subprocess.Popen[Any] | None) -> None:
    """SIGTERM our own process, SIGKILL if it lingers."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def leader_id(store: Store) -> str | None:
    """The id of the controller holding the election key, as stored."""
    kv = store.get(keyspace.LEADER)
    return kv.value.decode() if kv is not None else None
