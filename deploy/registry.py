"""A local docker-registry (distribution v2.8) on 127.0.0.1, and the busybox image to seed it with.

Used by the demo, the lab and the tests.

Only the process this class started is ever signalled, by its pid; never anything by name.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from agent.images.busybox import make_busybox_rootfs
from agent.images.image import ImageConfig
from agent.images.store import ImageStore
from agent.models import ImageInfo

REGISTRY_BIN = Path("/usr/bin/docker-registry")
_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {addr}
  secret: {secret}
"""


def write_config(path: Path, storage: Path, addr: str, secret: str) -> Path:
    """docker-registry's config: filesystem storage, deletes allowed, quiet logs."""
    path.write_text(_CONFIG.format(storage=storage, addr=addr, secret=secret))
    return path


def free_port() -> int:
    """A port the kernel just handed out (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """`with Registry(tmp_path) as reg:` -> a registry at `reg.host` storing under `reg.storage`."""

    def __init__(self, workdir: Path, startup_timeout: float = 10.0) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.startup_timeout = startup_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = write_config(self.workdir / "registry.yml", self.storage, self.host, "shoal-local")
        log = (self.workdir / "registry.log").open("wb")
        self._proc = subprocess.Popen(
            [str(REGISTRY_BIN), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()  # the child has its own copy of the descriptor
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"docker-registry exited: {self.log_text()}")
                try:
                    if client.get(f"http://{self.host}/v2/").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not answer within {self.startup_timeout}s")
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the registry this object started (by its pid) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log_text(self) -> str:
        path = self.workdir / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob (distribution's filesystem layout)."""
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def import_busybox(store: ImageStore, workdir: Path, ref: str = "busybox:latest") -> ImageInfo:
    """Import a busybox rootfs (built from /bin/busybox) into `store` as `ref`, with Cmd sh."""
    rootfs = make_busybox_rootfs(workdir / "busybox-rootfs")
    return store.import_rootfs(rootfs, ref, ImageConfig(cmd=("sh",), env=("PATH=/bin",)))


def push_busybox(registry: Registry, workdir: Path, name: str = "busybox:latest") -> ImageInfo:
    """Build busybox in a scratch store under `workdir` and push it as `<registry.host>/<name>`."""
    store = ImageStore(workdir / "push-store")
    ref = f"{registry.host}/{name}"
    import_busybox(store, workdir, ref)
    return store.push(ref)
