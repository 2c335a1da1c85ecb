"""`--metrics-address` on `shoal agent` and `shoal netplugin`: into the config, or one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig
from netplugin.daemon import NetpluginConfig
from tests.unit.test_cli_netplugin import invoke


def test_agent_flag_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[AgentConfig] = []
    monkeypatch.setattr("agent.daemon.run", seen.append)
    code, _, err = invoke("agent", "--state-dir", str(tmp_path), "--metrics-address", "127.0.0.1:0")
    assert code == 0, err
    assert seen[0].metrics_address == "127.0.0.1:0"
    invoke("agent", "--state-dir", str(tmp_path))
    assert seen[1].metrics_address == ""  # default: no listener


def test_netplugin_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[NetpluginConfig] = []
    monkeypatch.setattr("netplugin.daemon.run", seen.append)
    args = ["netplugin", "--public-ip", "10.250.0.2", "--metrics-address", "[::1]:9100"]
    code, _, err = invoke(*args, "--ipam-dir", str(tmp_path / "ipam"))
    assert code == 0, err
    assert (seen[0].metrics_address, seen[0].ipam_dir) == ("[::1]:9100", tmp_path / "ipam")


@pytest.mark.parametrize("command", [["agent"], ["netplugin", "--public-ip", "10.250.0.2"]])
@pytest.mark.parametrize("address", ["9100", "localhost:", "host:99999", ":9100"])
def test_a_bad_address_is_one_line_naming_the_flag(command: list[str], address: str) -> None:
    code, _, err = invoke(*command, "--metrics-address", address)
    assert code == 3
    assert err.strip() == (
        f"Error: invalid --metrics-address {address!r}: expected HOST:PORT (port 0 picks a free one)"
    )
