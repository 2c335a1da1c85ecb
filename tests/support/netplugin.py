"""`shoal netplugin` processes for tests: one per lab host, stopped by their own pid."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from netplugin.env import SubnetEnv, read_subnet_env
from tests.support.agent import wait_for
from tests.support.lab import LabHost

SHOAL = str(Path(sys.executable).parent / "shoal")


def set_network_config(endpoint: str, prefix: str, network: str, *flags: str) -> None:
    """`shoal network config set`, as an operator would run it."""
    argv = [SHOAL, "network", "config", "set", "--etcd", endpoint, "--prefix", prefix, "--network", network]
    subprocess.run([*argv, *flags], check=True, capture_output=True)


@dataclass
class Daemon:
    host: LabHost
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def subnet_file(self) -> Path:
        return self.base / "subnet.env"

    def start(self, endpoint: str, prefix: str, lease_ttl: int = 5) -> None:
        argv = [SHOAL, "netplugin", "--etcd", endpoint, "--public-ip", str(self.host.public_ip)]
        argv += ["--netns", self.host.netns, "--prefix", prefix, "--lease-ttl", str(lease_ttl)]
        argv += ["--state-dir", str(self.base / "state"), "--subnet-file", str(self.subnet_file)]
        with (self.base / "netplugin.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def env(self) -> SubnetEnv:
        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            return self.subnet_file.exists()

        wait_for(up, timeout=30, what=f"netplugin on {self.host.netns} to write {self.subnet_file}")
        env = read_subnet_env(self.subnet_file)
        assert env is not None
        return env

    def log(self) -> str:
        return (self.base / "netplugin.log").read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, by our own pid; SIGKILL if it does not go."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def kill9(self) -> None:
        """Die without a word: the lease is left to expire."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
