"""The runtime against real runc: shim, logs, limits and Docker's security defaults.

Needs root, runc and cgroup v1. Every test uses its own runc root, container ids and
cgroup parent, and tears down only what it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.errors import Unavailable
from agent.images.busybox import make_busybox_rootfs
from agent.models import LogEntry, Resources
from agent.runtime import cgroups, monitor, rootfs
from agent.runtime.logs import read_logs
from agent.runtime.runc import Runc
from agent.runtime.spec import OciInputs, build_oci_spec

RUNC = shutil.which("runc") or "/usr/sbin/runc"
REPO = Path(__file__).resolve().parents[2]
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@dataclass
class Ctr:
    id: str
    dir: Path
    cfg: monitor.ShimConfig
    cgroups_path: str
    shim_pid: int = 0
    shim_ticks: int = 0
    pid: int = 0

    @property
    def log(self) -> Path:
        return self.cfg.log_path

    def entries(self) -> list[LogEntry]:
        return list(read_logs(self.log))

    def text(self, stream: str | None = None) -> str:
        return "".join(e.line for e in self.entries() if stream in (None, e.stream))

    def wait_exit(self, timeout: float = 10.0) -> monitor.ExitRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = monitor.read_exit(self.cfg.exit_file)
            if rec is not None:
                return rec
            time.sleep(0.02)
        raise AssertionError(f"{self.id} did not exit within {timeout}s; log: {self.text()!r}")


@dataclass
class Box:
    """Starts test containers and undoes everything it did, even when a test fails."""

    tmp: Path
    lower: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started: list[Ctr] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runc = Runc(RUNC, self.tmp / "runc")
        self.zygote = monitor.ShimZygote(self.tmp / "zygote.log")

    def prepare(
        self,
        args: Sequence[str],
        resources: Resources | None = None,
        log_max_size: int = 1 << 20,
        log_max_files: int = 3,
    ) -> Ctr:
        cid = f"shoaltest-{uuid.uuid4().hex[:8]}"
        d = self.tmp / cid
        for sub in ("upper", "work", "rootfs"):
            (d / sub).mkdir(parents=True)
        cg = f"/shoal-test-{self.tag}/{cid}"
        ctr = Ctr(
            id=cid,
            dir=d,
            cgroups_path=cg,
            cfg=monitor.ShimConfig(
                id=cid,
                bundle=d,
                runc=RUNC,
                runc_root=self.runc.root,
                log_path=d / "container.log",
                log_max_size=log_max_size,
                log_max_files=log_max_files,
                exit_file=d / "exit.json",
                memory_cgroup=str(cgroups.memory_cgroup_dir(cg)),
                pid_file=d / "init.pid",
            ),
        )
        self.started.append(ctr)
        rootfs.mount_overlay([self.lower], d / "upper", d / "work", d / "rootfs")
        inputs = OciInputs(
            args=args,
            rootfs=d / "rootfs",
            cgroups_path=cg,
            hostname=cid[:12],
            resources=resources or Resources(),
        )
        (d / "config.json").write_text(json.dumps(build_oci_spec(inputs)))
        return ctr

    def start(self, args: Sequence[str], **kw: object) -> Ctr:
        ctr = self.prepare(args, **kw)  # type: ignore[arg-type]
        started = monitor.start_shim(ctr.cfg, ctr.dir, self.zygote)
        ctr.shim_pid, ctr.pid = started.shim_pid, started.container_pid
        ctr.shim_ticks = monitor.process_start_ticks(ctr.shim_pid) or 0
        return ctr

    def cleanup(self) -> None:
        for ctr in self.started:
            self.runc.delete(ctr.id, force=True)
            if ctr.shim_pid:
                _stop_shim(ctr.shim_pid, ctr.shim_ticks)
            rootfs.unmount(ctr.dir / "rootfs")
        for parent in Path("/sys/fs/cgroup").glob(f"*/shoal-test-{self.tag}"):
            for child in parent.iterdir():
                if child.is_dir():
                    child.rmdir()
            parent.rmdir()
        self.zygote.close()


def _stop_shim(pid: int, ticks: int) -> None:
    """Give our shim 2 s to finish on its own, then SIGKILL it (only if the pid is still it)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and monitor.is_same_process(pid, ticks):
        time.sleep(0.02)
    if monitor.is_same_process(pid, ticks):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def busybox_lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


@pytest.fixture
def box(tmp_path: Path, busybox_lower: Path) -> Iterator[Box]:
    b = Box(tmp_path, busybox_lower)
    try:
        yield b
    finally:
        b.cleanup()


def wait_for(cond: object, timeout: float = 5.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---- tests -------------------------------------------------------------------------------------


def test_logs_streams_and_exit_code(box: Box) -> None:
    ctr = box.start(["sh", "-c", "echo out; echo err >&2; printf partial; exit 3"])
    rec = ctr.wait_exit()
    assert rec.exit_code == 3
    assert not rec.oom_killed and rec.error == ""
    assert TIME_RE.match(rec.started_at) and TIME_RE.match(rec.finished_at)
    entries = ctr.entries()
    assert [(e.stream, e.line) for e in entries if e.stream == "stdout"] == [
        ("stdout", "out\n"),
        ("stdout", "partial"),  # flushed at EOF without a newline
    ]
    assert [e.line for e in entries if e.stream == "stderr"] == ["err\n"]
    assert all(TIME_RE.match(e.time) for e in entries)
    raw = json.loads(ctr.log.read_text().splitlines()[0])
    assert set(raw) == {"log", "stream", "time"}  # Docker's json-file shape
    assert box.runc.state(ctr.id) is None  # the shim ran `runc delete`


def test_security_defaults(box: Box) -> None:
    script = (
        "grep -E '^(CapEff|CapInh|Seccomp|NoNewPrivs):' /proc/1/status; ls /sys/class/net; "
        "wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/domainname && exit 0; exit 42"
    )
    ctr = box.start(["sh", "-c", script])
    assert ctr.wait_exit().exit_code == 42
    out = ctr.text("stdout")
    assert "CapEff:\t00000000a80425fb\n" in out  # Docker's 14 default capabilities
    assert "CapInh:\t0000000000000000\n" in out
    assert "Seccomp:\t2\n" in out
    assert "NoNewPrivs:\t1\n" in out
    assert out.split("Seccomp:\t2\n")[1] == "lo\n0\n"  # only lo; /proc/timer_list masked
    assert "Read-only file system" in ctr.text("stderr")


def test_exec_kill_state_and_ps(box: Box) -> None:
    ctr = box.start(["sleep", "30"])
    state = box.runc.state(ctr.id)
    assert state is not None and state["status"] == "running" and state["pid"] == ctr.pid
    assert ctr.pid in box.runc.ps(ctr.id)
    assert ctr.id in [c["id"] for c in box.runc.list()]
    proc = box.runc.exec_popen(
        ctr.id,
        ["sh", "-c", "echo hi $FOO; echo oops >&2; exit 5"],
        env={"FOO": "bar"},
        cwd="/tmp",
        user="65534:65534",
    )
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (5, b"hi bar\n", b"oops\n")
    whoami = box.runc.exec_popen(ctr.id, ["id", "-u"], user="65534:65534").communicate(timeout=10)[0]
    assert whoami == b"65534\n"
    assert box.runc.kill(ctr.id, "KILL") is True  # pid 1 ignores TERM without a handler
    rec = ctr.wait_exit()
    assert rec.exit_code == 137 and not rec.oom_killed
    assert box.runc.kill(ctr.id, signal.SIGKILL) is False  # gone: not an error
    assert box.runc.state(ctr.id) is None


def test_runc_unknown_container(box: Box) -> None:
    assert box.runc.state("shoaltest-nope") is None
    assert box.runc.kill("shoaltest-nope", 9, all=True) is False
    box.runc.delete("shoaltest-nope", force=True)  # idempotent
    box.runc.delete("shoaltest-nope")
    assert box.runc.list() == []
    with pytest.raises(Unavailable, match=r"^runc ps: "):
        box.runc.ps("shoaltest-nope")


def test_start_failure_is_reported(box: Box) -> None:
    ctr = box.prepare(["/no/such/binary"])
    with pytest.raises(Unavailable) as exc:
        monitor.start_shim(ctr.cfg, ctr.dir, box.zygote)
    msg = str(exc.value)
    assert msg.startswith("runc: ") and "\n" not in msg and "/no/such/binary" in msg
    rec = monitor.read_exit(ctr.cfg.exit_file)
    assert rec is not None and rec.exit_code == 127 and rec.error
    assert box.runc.state(ctr.id) is None


def test_oom_kill(box: Box) -> None:
    hog = ["sh", "-c", "x=a; while true; do x=$x$x; done"]
    ctr = box.start(hog, resources=Resources(memory_bytes=16 << 20))
    rec = ctr.wait_exit(timeout=20)
    assert (rec.exit_code, rec.oom_killed) == (137, True)


def test_pids_limit_and_stats(box: Box) -> None:
    # The inner shell forks until it fails (and then exits); its sleeps stay behind.
    script = "sh -c 'while true; do sleep 10 & done'; echo spawned; exec sleep 10"
    ctr = box.start(["sh", "-c", script], resources=Resources(pids_limit=10, memory_bytes=64 << 20))
    wait_for(lambda: "spawned" in ctr.text("stdout"))
    stats = cgroups.read_stats(ctr.cgroups_path)
    assert 8 <= stats.pids <= 10  # outer sh + the inner's 8 sleeps; the 9th fork failed
    assert "can't fork" in ctr.text("stderr")
    assert stats.memory_limit_bytes == 64 << 20
    assert 0 < stats.memory_working_set_bytes < 64 << 20
    assert stats.cpu_seconds > 0
    assert sorted(cgroups.cgroup_pids(ctr.cgroups_path)) == sorted(box.runc.ps(ctr.id))
    assert cgroups.oom_kill_count(ctr.cgroups_path) == 0
    box.runc.kill(ctr.id, "KILL", all=True)
    assert ctr.wait_exit().exit_code == 137


def test_log_rotation_keeps_newest(box: Box) -> None:
    ctr = box.start(["seq", "1", "600"], log_max_size=4096, log_max_files=3)
    assert ctr.wait_exit().exit_code == 0
    files = sorted(p.name for p in ctr.dir.glob("container.log*"))
    assert files == ["container.log", "container.log.1", "container.log.2"]
    for name in ("container.log.1", "container.log.2"):
        assert 4096 <= (ctr.dir / name).stat().st_size < 4096 + 100
    nums = [int(e.line) for e in ctr.entries()]
    assert nums[-1] == 600 and nums == list(range(nums[0], 601))  # a contiguous newest suffix
    assert [int(e.line) for e in read_logs(ctr.log, tail=5)] == [596, 597, 598, 599, 600]


def test_follow_streams_across_rotation(box: Box) -> None:
    ctr = box.prepare(
        ["sh", "-c", "i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); sleep 0.02; done"],
        log_max_size=1024,
        log_max_files=2,
    )
    got: list[str] = []
    stop = threading.Event()

    def reader() -> None:  # starts before the log file exists
        for e in read_logs(ctr.log, follow=True, stop=stop):
            got.append(e.line)
            if len(got) == 40:
                stop.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    started = monitor.start_shim(ctr.cfg, ctr.dir, box.zygote)
    ctr.shim_pid = started.shim_pid
    ctr.shim_ticks = monitor.process_start_ticks(ctr.shim_pid) or 0
    t.join(timeout=15)
    stop.set()
    assert got == [f"line{i}\n" for i in range(40)]
    assert Path(f"{ctr.log}.1").exists()  # it did rotate while we followed


_CHILD = """
import json, sys, time
from pathlib import Path
from agent.runtime.monitor import ShimConfig, ShimZygote, start_shim
zygote = ShimZygote(Path(sys.argv[2]) / "zygote.log")
s = start_shim(ShimConfig(**json.loads(sys.argv[1])), Path(sys.argv[2]), zygote)
print(json.dumps([s.shim_pid, s.container_pid]), flush=True)
time.sleep(60)
"""


def test_shim_survives_its_parent(box: Box) -> None:
    ctr = box.prepare(["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(ctr.cfg.to_json()), str(ctr.dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        ctr.shim_pid, ctr.pid = json.loads(child.stdout.readline())
        ctr.shim_ticks = monitor.process_start_ticks(ctr.shim_pid) or 0
    finally:
        child.kill()  # SIGKILL: the agent (and so its zygote's socket) dies without any cleanup
        child.wait()
    assert monitor.is_same_process(ctr.shim_pid, ctr.shim_ticks)
    state = box.runc.state(ctr.id)
    assert state is not None and state["status"] == "running"
    before = len(ctr.entries())
    wait_for(lambda: len(ctr.entries()) > before + 3)
    box.runc.kill(ctr.id, "KILL")
    assert ctr.wait_exit().exit_code == 137  # the orphaned shim still records the exit
