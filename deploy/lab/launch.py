"""How each lab daemon is started and when it counts as up. Every start records the process in the
state before waiting, so a failed wait still leaves it for `lab down` to remove."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from agent.errors import ShoalError, Unavailable
from deploy.lab import procs
from deploy.lab.state import Proc

SHOAL = str(Path(sys.executable).parent / "shoal")
ETCD_BIN = "/usr/bin/etcd"
REGISTRY_BIN = "/usr/bin/docker-registry"


def free_ports(count: int) -> list[int]:
    """Distinct ports the kernel just handed out (all held open together, then closed)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def metrics_address() -> tuple[str, str]:
    """A loopback --metrics-address for a lab daemon (they all run in the root netns) and its URL."""
    address = f"127.0.0.1:{free_ports(1)[0]}"
    return address, f"http://{address}/metrics"


def wait_until(ready: Callable[[], bool], proc: Proc, what: str, timeout: float = 30) -> None:
    """Poll `ready()`; fail naming `what` and the tail of its log if it dies or the time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not procs.alive(proc):
            raise Unavailable(f"{what} exited: {procs.log_tail(proc, 5)}")
        if time.monotonic() > deadline:
            raise Unavailable(f"{what} not ready after {timeout:g}s; see {proc.log}")
        time.sleep(0.05)


def _http_ok(url: str, body: bytes | None = None) -> bool:
    # No proxies: an http_proxy in the environment must not see loopback checks.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1.0) as resp:
            return resp.status == 200 and (body is None or body in resp.read())
    except OSError:
        return False


def etcd_argv(name: str, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    # Same flags as controller.store.etcd_server.EtcdServer (1 s minimum lease), compaction on.
    return [
        ETCD_BIN,
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
        f"--initial-cluster-token={name}",
        "--initial-cluster-state=new",
        "--auto-compaction-retention=5m",
        "--heartbeat-interval=50",
        "--election-timeout=500",
    ]


def etcd_env() -> dict[str, str]:
    """ETCD_* variables in our environment would override the flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}


def wait_etcd(proc: Proc, endpoint: str) -> None:
    wait_until(lambda: _http_ok(f"http://{endpoint}/health", b'"true"'), proc, "etcd")


def wait_relay(proc: Proc, ports: list[int]) -> None:
    """Up once etcd answers through every host's relay port (so through every underlay link)."""
    urls = [f"http://127.0.0.1:{port}/health" for port in ports]
    wait_until(lambda: all(_http_ok(url, b'"true"') for url in urls), proc, "etcd relay")


def wait_prometheus(proc: Proc, url: str) -> None:
    """Up once /-/ready answers: config loaded, rules loaded, TSDB open."""
    wait_until(lambda: _http_ok(f"{url}/-/ready"), proc, "prometheus")


def registry_config(workdir: Path, host: str) -> Path:
    from deploy.registry import write_config  # httpx and the image store: only when it is needed

    return write_config(workdir / "registry.yml", workdir / "storage", host, "shoal-lab")


def wait_registry(proc: Proc, host: str) -> None:
    wait_until(lambda: _http_ok(f"http://{host}/v2/"), proc, "docker-registry")


def seed_busybox(host: str, workdir: Path) -> None:
    """Push busybox as `<host>/busybox:latest`, so services can say just `busybox`."""
    from agent.images.store import ImageStore
    from deploy.registry import import_busybox

    store = ImageStore(workdir / "push-store")
    ref = f"{host}/busybox:latest"
    import_busybox(store, workdir, ref)
    store.push(ref)


def network_config(etcd: str, network: str, backend: str) -> None:
    argv = [SHOAL, "network", "config", "set", "--etcd", etcd, "--network", network, "--backend", backend]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise Unavailable(f"shoal network config set failed: {result.stderr.strip()}")


def wait_controller(proc: Proc, target: str) -> None:
    from controller.client import ControlClient

    def up() -> bool:
        try:
            with ControlClient(target, timeout=1) as client:
                client.list_nodes()
            return True
        except ShoalError:
            return False

    wait_until(up, proc, f"controller {target}")


def wait_file(proc: Proc, path: Path, what: str) -> None:
    wait_until(path.exists, proc, what)


def wait_agent(proc: Proc, sock: Path, what: str) -> None:
    from agent.client import AgentClient

    def up() -> bool:
        if not sock.exists():
            return False
        client = AgentClient(sock)
        try:
            client.container_list(all=True)
            return True
        except ShoalError:
            return False
        finally:
            client.close()

    wait_until(up, proc, what)
