"""What an agent leaves behind once it is dead: its containers' monitors, runc state, container
network namespaces, overlay mounts and cgroups. Only what that agent's own records name is touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from agent.runtime.monitor import is_same_process
from agent.runtime.rootfs import unmount

CGROUP_ROOT = Path("/sys/fs/cgroup")


def remove_agent_leftovers(state_dir: Path, run_dir: Path, cgroup_parent: str, runc: str = "runc") -> None:
    """Call with the agent stopped: kill its containers' monitors (by recorded pid and start ticks),
    `runc delete -f` each container, delete its netns, unmount its rootfs, remove the cgroups."""
    containers = state_dir / "containers"
    for record in containers.glob("*/container.json") if containers.exists() else []:
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            data = {}
        shim_pid = data.get("shim_pid", 0)
        if is_same_process(shim_pid, data.get("shim_start_ticks", 0)):
            os.kill(shim_pid, signal.SIGKILL)
        cid = record.parent.name
        subprocess.run(
            [runc, "--root", str(run_dir / "runc"), "delete", "-f", cid], capture_output=True, check=False
        )
        if data.get("netns_path"):  # a bridge-network container's namespace (and its veth)
            subprocess.run(
                ["ip", "netns", "delete", Path(data["netns_path"]).name], capture_output=True, check=False
            )
        unmount(record.parent / "rootfs")
    remove_cgroups(cgroup_parent)


def remove_cgroups(cgroup_parent: str) -> None:
    for controller in CGROUP_ROOT.iterdir():
        parent = controller / cgroup_parent
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir():
                    _rmdir_quiet(child)
            _rmdir_quiet(parent)


def leftover_cgroups(cgroup_parent: str) -> list[str]:
    return [str(c / cgroup_parent) for c in CGROUP_ROOT.iterdir() if (c / cgroup_parent).is_dir()]


def _rmdir_quiet(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
