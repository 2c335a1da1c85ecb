"""Pure-file parts of the runtime: the shim's log writer, the log reader, cgroup readers,
overlay options and runc error parsing (no containers needed)."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from agent.errors import InvalidArgument, NotFound
from agent.runtime import cgroups
from agent.runtime.logs import read_logs, time_ns
from agent.runtime.monitor import SHIM_PATH, ShimConfig, read_exit
from agent.runtime.rootfs import PAGE_SIZE, overlay_options
from agent.runtime.runc import runc_error


def load_shim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shoal_shim", SHIM_PATH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


shim = load_shim()


def entry(t: str, line: str, stream: str = "stdout") -> str:
    return json.dumps({"log": line, "stream": stream, "time": t}) + "\n"


def test_shim_is_stdlib_only() -> None:
    text = SHIM_PATH.read_text()
    assert "import agent" not in text and "from agent" not in text


def test_writer_splits_lines_and_long_partials(tmp_path: Path) -> None:
    log = shim.LogFile(str(tmp_path / "c.log"), 0, 1)
    log.feed("stdout", b"a\nb")
    log.feed("stdout", b"c\n" + b"x" * (shim.PARTIAL + 10))
    log.feed("stderr", "é\n".encode())
    log.flush("stdout")
    lines = [json.loads(raw) for raw in (tmp_path / "c.log").read_text().splitlines()]
    assert [(d["stream"], d["log"]) for d in lines] == [
        ("stdout", "a\n"),
        ("stdout", "bc\n"),
        ("stdout", "x" * shim.PARTIAL),
        ("stderr", "é\n"),
        ("stdout", "x" * 10),
    ]
    assert all(len(d["time"]) == 30 and d["time"].endswith("Z") for d in lines)


def test_writer_rotates_keeping_max_files(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = shim.LogFile(str(path), 200, 3)
    for i in range(100):
        log.feed("stdout", f"{i}\n".encode())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log", "c.log.1", "c.log.2"]
    nums = [int(e.line) for e in read_logs(path)]
    assert nums[-1] == 99 and nums == list(range(nums[0], 100))
    single = shim.LogFile(str(tmp_path / "one.log"), 100, 1)
    for i in range(20):
        single.feed("stdout", f"{i}\n".encode())
    assert not (tmp_path / "one.log.1").exists()


def test_exit_code_mapping() -> None:
    assert shim.exit_code(3 << 8) == 3
    assert shim.exit_code(9) == 137  # killed by SIGKILL
    assert shim.exit_code(None) == 255
    assert shim.start_error_code('exec: "x": executable file not found in $PATH') == 127


def make_rotated(path: Path) -> None:
    Path(f"{path}.2").write_text(entry("2026-01-01T00:00:01.000000000Z", "one\n"))
    Path(f"{path}.1").write_text(
        entry("2026-01-01T00:00:02.000000000Z", "two\n", "stderr")
        + "garbage\n"
        + entry("2026-01-01T00:00:03.500000000Z", "three\n")
    )
    path.write_text(entry("2026-01-01T00:00:04.000000000Z", "four\n") + '{"log":"part')


def test_read_logs_order_tail_since(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    make_rotated(path)
    assert [e.line for e in read_logs(path)] == ["one\n", "two\n", "three\n", "four\n"]
    assert [e.stream for e in read_logs(path)][1] == "stderr"
    assert [e.line for e in read_logs(path, tail=2)] == ["three\n", "four\n"]
    assert [e.line for e in read_logs(path, tail=10)] == ["one\n", "two\n", "three\n", "four\n"]
    assert list(read_logs(path, tail=0)) == []
    since = time_ns("2026-01-01T00:00:03.000000000Z") / 1e9
    assert [e.line for e in read_logs(path, since=since)] == ["three\n", "four\n"]
    assert [e.line for e in read_logs(path, since=since, tail=5)] == ["three\n", "four\n"]
    assert list(read_logs(tmp_path / "missing.log")) == []


def test_read_logs_follow_appends_rotation_and_stop(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_text(entry("2026-01-01T00:00:01.000000000Z", "old\n"))
    stop = threading.Event()
    got: list[str] = []
    t = threading.Thread(
        target=lambda: got.extend(e.line for e in read_logs(path, tail=1, follow=True, stop=stop))
    )
    t.start()
    time.sleep(0.1)
    with path.open("a") as f:
        f.write(entry("2026-01-01T00:00:02.000000000Z", "new\n")[:10])  # a partial write
        f.flush()
        time.sleep(0.1)
        f.write(entry("2026-01-01T00:00:02.000000000Z", "new\n")[10:])
        f.write(entry("2026-01-01T00:00:02.000000000Z", "last-before-rotate\n"))
    path.rename(f"{path}.1")
    path.write_text(entry("2026-01-01T00:00:03.000000000Z", "rotated\n"))
    time.sleep(0.2)
    stop.set()
    t.join(timeout=2)
    assert not t.is_alive()
    assert got == ["old\n", "new\n", "last-before-rotate\n", "rotated\n"]


def test_cgroup_readers(tmp_path: Path) -> None:
    cg = "/shoal/c1"
    for ctl in ("memory", "cpuacct", "pids"):
        (tmp_path / ctl / "shoal" / "c1").mkdir(parents=True)
    mem = cgroups.memory_cgroup_dir(cg, tmp_path)
    (mem / "memory.usage_in_bytes").write_text("1000000\n")
    (mem / "memory.stat").write_text("cache 5\ntotal_inactive_file 200000\n")
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (tmp_path / "cpuacct/shoal/c1/cpuacct.usage").write_text("2500000000\n")
    (tmp_path / "pids/shoal/c1/cgroup.procs").write_text("10\n11\n")
    stats = cgroups.read_stats(cg, tmp_path)
    assert stats == cgroups.CgroupStats(2.5, 800000, None, 0)  # pids.current missing -> 0
    (mem / "memory.limit_in_bytes").write_text("16777216\n")
    assert cgroups.read_stats(cg, tmp_path).memory_limit_bytes == 16777216
    assert cgroups.oom_kill_count(cg, tmp_path) == 2
    assert cgroups.cgroup_pids(cg, tmp_path) == [10, 11]
    with pytest.raises(NotFound, match="/shoal/gone"):
        cgroups.read_stats("/shoal/gone", tmp_path)
    assert cgroups.oom_kill_count("/shoal/gone", tmp_path) == 0
    assert cgroups.cgroup_pids("/shoal/gone", tmp_path) == []
    with pytest.raises(InvalidArgument):
        cgroups.read_stats("/shoal/../etc", tmp_path)


def test_overlay_options() -> None:
    opts = overlay_options([Path("/l/base"), Path("/l/top")], Path("/u"), Path("/w"))
    assert opts == "lowerdir=/l/top:/l/base,upperdir=/u,workdir=/w"
    with pytest.raises(InvalidArgument, match="page"):
        overlay_options(
            [Path("/l/" + "x" * 100 + str(i)) for i in range(PAGE_SIZE // 100)], Path("/u"), Path("/w")
        )
    with pytest.raises(InvalidArgument, match="','"):
        overlay_options([Path("/a,b")], Path("/u"), Path("/w"))


def test_runc_error_parsing() -> None:
    stderr = b'{"level":"warning","msg":"w"}\n{"level":"error","msg":"container  does not\\nexist"}\n'
    assert runc_error(stderr) == "container does not exist"
    assert runc_error(b"plain text\n") == "plain text"
    assert runc_error(b"") == "failed with no message"


def test_read_exit_and_config_json(tmp_path: Path) -> None:
    assert read_exit(tmp_path / "exit.json") is None
    (tmp_path / "exit.json").write_text(
        json.dumps({"exit_code": 1, "oom_killed": True, "started_at": "a", "finished_at": "b", "error": ""})
    )
    rec = read_exit(tmp_path / "exit.json")
    assert rec is not None and rec.exit_code == 1 and rec.oom_killed
    cfg = ShimConfig(
        "c", tmp_path, "runc", tmp_path, tmp_path / "l", 1, 2, tmp_path / "e", "", tmp_path / "p"
    )
    assert cfg.to_json()["bundle"] == str(tmp_path) and cfg.to_json()["log_max_files"] == 2


def test_follow_delivers_lines_written_just_before_stop(tmp_path: Path) -> None:
    # The agent sets `stop` when a container exits; its last lines may land between two polls.
    log = tmp_path / "c.log"
    log.write_text(entry("2026-01-01T00:00:00.000000000Z", "first\n"))
    stop = threading.Event()
    got: list[str] = []
    follower = threading.Thread(
        target=lambda: got.extend(e.line for e in read_logs(log, None, None, True, stop))
    )
    follower.start()
    time.sleep(0.2)  # the follower is now waiting between polls
    with log.open("a") as f:
        f.write(entry("2026-01-01T00:00:01.000000000Z", "last\n"))
    stop.set()
    follower.join(timeout=5)
    assert got == ["first\n", "last\n"]
