"""Launch a private single-member etcd on loopback (tests and the local lab).

Ports come from binding port 0, the name and data dir are unique, and stop() only
ever signals the pid this object started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType

from agent.errors import Unavailable

HOST = "127.0.0.1"
_STOP_GRACE = 5.0
_PORT_ATTEMPTS = 3  # a port picked by binding 0 can be taken before etcd binds it


def _free_ports(count: int) -> list[int]:
    # Hold all sockets open together so the ports are distinct.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdServer:
    def __init__(
        self,
        workdir: Path,
        *,
        name_prefix: str = "shoaltest-",
        binary: str = "/usr/bin/etcd",
        start_timeout: float = 10.0,
        auto_compaction_retention: str = "0",
        heartbeat_ms: int = 50,
        election_ms: int = 500,
    ) -> None:
        """auto_compaction_retention "0" is off (tests compact explicitly); the lab should keep
        it on ("5m"), since a long history slows reads. The short heartbeat/election make
        etcd's minimum lease TTL 1 s instead of 2 s (it is ceil(1.5 * election timeout))."""
        self.workdir = workdir
        self.name = f"{name_prefix}{uuid.uuid4().hex[:10]}"
        self.data_dir = workdir / f"{self.name}.etcd"
        self.log_path = workdir / f"{self.name}.log"
        self._binary = binary
        self._start_timeout = start_timeout
        self._retention = auto_compaction_retention
        self._heartbeat_ms = heartbeat_ms
        self._election_ms = election_ms
        self._proc: subprocess.Popen[bytes] | None = None
        self.client_port = 0

    @property
    def endpoint(self) -> str:
        if self._proc is None:
            raise Unavailable(f"etcd {self.name} is not running")
        return f"{HOST}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        for attempt in range(_PORT_ATTEMPTS):
            self._launch()
            if self._wait_ready():
                return
            exited = self._proc is not None and self._proc.poll() is not None
            self.stop()
            if not exited or attempt == _PORT_ATTEMPTS - 1:
                break
        raise Unavailable(
            f"etcd {self.name} did not become ready in {self._start_timeout:g}s; see {self.log_path}"
        )

    def _launch(self) -> None:
        client_port, peer_port = _free_ports(2)
        client_url, peer_url = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            self._binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={self.name}={peer_url}",
            f"--initial-cluster-token={self.name}",
            "--initial-cluster-state=new",
            f"--auto-compaction-retention={self._retention}",
            f"--heartbeat-interval={self._heartbeat_ms}",
            f"--election-timeout={self._election_ms}",
        ]
        # ETCD_* variables in our environment would override the flags above.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.client_port = client_port

    def _wait_ready(self) -> bool:
        # No proxies: http_proxy in the environment must not see loopback health checks.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"http://{HOST}:{self.client_port}/health"
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with opener.open(url, timeout=1.0) as resp:
                    if b'"true"' in resp.read():
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
