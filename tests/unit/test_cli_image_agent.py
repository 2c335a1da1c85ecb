"""`shoal image ...` against the fake agent, and `shoal agent` flag handling."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig, BackoffSettings
from tests.unit.test_api_roundtrip import Served, serve_fake
from tests.unit.test_cli_container import one_error_line, shoal


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Served]:
    with serve_fake(tmp_path) as served:
        yield served


def test_image_ls_table_quiet_json_and_filter(agent: Served) -> None:
    table = shoal(agent.host, "image", "ls").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:3] == ["registry:5000/library/busybox", "latest", "2" * 12]
    assert table[1].endswith("4.26MB")
    assert table[2].split()[:2] == ["<none>", "<none>"]
    assert shoal(agent.host, "image", "ls", "-q").stdout.split() == ["2" * 12]  # one id, listed once
    data = json.loads(shoal(agent.host, "image", "ls", "-o", "json").stdout)
    assert [i["repo_tags"] for i in data] == [["registry:5000/library/busybox:latest"], []]
    dangling = shoal(agent.host, "image", "ls", "--filter", "dangling=true", "-o", "json").stdout
    assert [i["dangling"] for i in json.loads(dangling)] == [True]
    bad = shoal(agent.host, "image", "ls", "--filter", "label=x")
    assert bad.exit_code == 3 and one_error_line(bad)


def test_paths_are_sent_absolute(agent: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shoal(agent.host, "image", "save", "-o", "out.tar", "a:1", "b:2")
    assert agent.fake.last() == ("image_save", {"refs": ["a:1", "b:2"], "path": str(tmp_path / "out.tar")})
    loaded = shoal(agent.host, "image", "load", "-i", "in.tar")
    assert agent.fake.last() == ("image_load", {"path": str(tmp_path / "in.tar")})
    assert loaded.stdout.splitlines() == ["Loaded image: loaded:1", "Loaded image ID: sha256:" + "2" * 64]
    imported = shoal(agent.host, "image", "import", "rootfs", "mine:1")
    assert agent.fake.last() == ("image_import", {"source": str(tmp_path / "rootfs"), "ref": "mine:1"})
    assert imported.stdout == "sha256:" + "2" * 64 + "\n"


def test_pull_push_tag_rm(agent: Served) -> None:
    assert shoal(agent.host, "image", "pull", "busybox").stdout.strip() == "sha256:" + "2" * 64
    pushed = shoal(agent.host, "image", "push", "reg:5000/app:1").stdout.strip()
    assert pushed == "reg:5000/app:1: digest: sha256:" + "3" * 64 + " size: 4260000"
    assert shoal(agent.host, "image", "tag", "app:1", "app:2").exit_code == 0
    assert agent.fake.last() == ("image_tag", {"source": "app:1", "target": "app:2"})

    removed = shoal(agent.host, "image", "rm", "used:1", "x:1")
    assert removed.exit_code == 1  # the in-use image; x:1 is still removed
    assert removed.stdout.splitlines() == ["Untagged: x:1", "Deleted: sha256:" + "2" * 64]
    assert one_error_line(removed) == "Error: image used:1 is in use by a container"


def test_unreachable_registry_is_exit_1(agent: Served) -> None:
    down = shoal(agent.host, "image", "pull", "127.0.0.1:1/busybox:latest")
    assert down.exit_code == 1 and "unreachable" in one_error_line(down)


def test_agent_flags_build_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[AgentConfig] = []
    monkeypatch.setattr("agent.daemon.run", seen.append)
    monkeypatch.chdir(tmp_path)
    result = shoal(
        "unix:///unused",
        "agent",
        "--state-dir",
        "state",
        "--run-dir",
        "/run/x",
        "--runc",
        "/usr/bin/runc",
        "--default-registry",
        "127.0.0.1:5000",
        "--bind-allow",
        "/srv",
        "--bind-allow",
        "data",
        "--allow-privileged",
        "--allow-host-network",
        "--allow-cap-add",
        "cap_net_admin",
        "--log-max-size",
        "4k",
        "--log-max-files",
        "3",
        "--cgroup-parent",
        "shoaltest",
        "--restart-delay",
        "0.5",
        "--restart-factor",
        "3",
        "--restart-max-delay",
        "30",
        "--restart-reset-after",
        "5",
    )
    assert result.exit_code == 0, result.output
    [config] = seen
    assert config.state_dir == tmp_path / "state" and config.run_dir == Path("/run/x")
    assert config.socket_path == Path("/run/x/agent.sock")
    assert config.bind_allow == (Path("/srv"), tmp_path / "data")
    assert (config.allow_privileged, config.allow_host_namespaces) == (True, True)
    assert config.allowed_cap_add == frozenset({"NET_ADMIN"})
    assert (config.log_max_size, config.log_max_files, config.cgroup_parent) == (4096, 3, "shoaltest")
    assert (config.runc, config.default_registry) == ("/usr/bin/runc", "127.0.0.1:5000")
    assert config.backoff == BackoffSettings(initial=0.5, factor=3, cap=30, reset_after=5)

    env = tmp_path / "subnet.env"
    env.write_text("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n")
    networked = shoal("unix:///unused", "agent", "--network-env", "subnet.env")
    assert networked.exit_code == 0, networked.output
    assert (seen[1].network_env, seen[1].network_netns) == (env, None)

    defaults = shoal("unix:///unused", "agent")
    assert defaults.exit_code == 0 and seen[2] == AgentConfig()


def test_bad_agent_flags_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.daemon.run", lambda config: pytest.fail("the daemon must not start"))
    for flags in (
        ["--log-max-size", "lots"],
        ["--log-max-files", "0"],
        ["--cgroup-parent", "../escape"],
        ["--restart-delay", "0"],
        ["--restart-factor", "0.5"],
        ["--restart-max-delay", "0.01"],
        ["--network-env", "/nonexistent/subnet.env"],
        ["--network-netns", "some-ns"],  # without --network-env
    ):
        result = shoal("unix:///unused", "agent", *flags)
        assert result.exit_code == 3, (flags, result.output)
        one_error_line(result)
