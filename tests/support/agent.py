"""Run a real `shoal agent` for tests, isolated by directory, socket and cgroup parent.

Teardown kills only the processes this harness started: the agent's pid and the monitor
pids recorded in that agent's own container records; then it removes runc state, mounts
and cgroups under the unique prefix.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.client import AgentClient
from agent.config import AgentConfig
from agent.images.store import ImageStore
from agent.node import Node
from deploy.lab.cleanup import remove_agent_leftovers

VENV_BIN = Path(sys.executable).parent
SHOAL = str(VENV_BIN / "shoal")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class AgentProcess:
    def __init__(
        self,
        base: Path,
        default_registry: str | None,
        extra_args: list[str] | None = None,
        *,
        etcd: str | None = None,
        node_id: str | None = None,
        node_ttl: float | None = None,
    ) -> None:
        """etcd: join that cluster as node `node_id` (default: a unique test id)."""
        self.prefix = f"shoaltest-{uuid.uuid4().hex[:8]}"
        self.etcd = etcd
        self.node_id = node_id or f"{self.prefix}-node"
        self.node_ttl = node_ttl
        self.state_dir = base / "state"
        self.run_dir = base / "run"
        self.default_registry = default_registry
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = base / "agent.log"

    @property
    def socket(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        args = [
            SHOAL,
            "agent",
            "--state-dir",
            str(self.state_dir),
            "--run-dir",
            str(self.run_dir),
            "--cgroup-parent",
            self.prefix,
            *self.extra_args,
        ]
        if self.default_registry:
            args += ["--default-registry", self.default_registry]
        if self.etcd:
            args += ["--etcd", self.etcd, "--node-id", self.node_id]
            if self.node_ttl is not None:
                args += ["--node-ttl", str(self.node_ttl)]
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log_file.read_text()}")
            if self.socket.exists():
                try:
                    AgentClient(self.socket).container_list(all=True)
                    return
                except Exception:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"agent did not become ready:\n{self.log_file.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def client(self) -> AgentClient:
        return AgentClient(self.socket)

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [SHOAL, "--host", self.host, *args], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"shoal {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def inspect(self, ref: str) -> dict[str, Any]:
        """`shoal container inspect REF`, parsed, as a user's script would read it."""
        info: dict[str, Any] = json.loads(self.cli("container", "inspect", ref).stdout)
        return info

    def state(self, ref: str) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect(ref)["state"]
        return state

    def teardown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        remove_agent_leftovers(self.state_dir, self.run_dir, self.prefix)

    def __enter__(self) -> AgentProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()


@contextmanager
def in_process_node(base: Path, default_registry: str) -> Iterator[Node]:
    """A started Node in this process. AgentProcess is used only for its unique directories,
    cgroup parent and exact teardown."""
    paths = AgentProcess(base, default_registry)
    config = AgentConfig(
        state_dir=paths.state_dir,
        run_dir=paths.run_dir,
        cgroup_parent=paths.prefix,
        default_registry=default_registry,
    )
    config.run_dir.mkdir(parents=True, exist_ok=True)
    node = Node(config, ImageStore(config.images_dir, config.default_registry))
    node.start()
    try:
        yield node
    finally:
        node.close()
        paths.teardown()


def wait_for(
    predicate: object, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll `predicate()` until true; fail with `what` after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
