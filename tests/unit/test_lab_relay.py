"""The lab relay's command line (pure): what `lab up` writes is what the relay reads back, and bad
input is one clear line naming the flag."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Network

import pytest

from agent.errors import InvalidArgument
from deploy.lab.netns import control_address, host_address
from deploy.lab.relay import NodeRoute, RelayConfig, parse_args, relay_argv


def test_relay_argv_round_trips() -> None:
    config = RelayConfig(
        etcd=("127.0.0.1", 2379),
        switch="lt1-sw",
        control="10.250.0.254",
        nodes=(NodeRoute("lt1-n1", 40001), NodeRoute("lt1-n2", 40002)),
    )
    argv = relay_argv("/venv/bin/python", config)
    assert argv[:3] == ["/venv/bin/python", "-m", "deploy.lab.relay"]
    assert parse_args(argv[3:]) == config


def test_relay_argv_round_trips_the_relays_own_netns() -> None:
    config = RelayConfig(
        ("127.0.0.1", 2379), None, "127.0.0.1", (NodeRoute(None, 40001), NodeRoute("n2", 40002))
    )
    assert parse_args(relay_argv("python", config)[3:]) == config


@pytest.mark.parametrize(
    ("args", "flag", "rule"),
    [
        (["--etcd", "10.1.2.3:2379"], "--etcd", "loopback"),
        (["--etcd", "127.0.0.1"], "--etcd", "ADDRESS:PORT"),
        (["--etcd", "127.0.0.1:70000"], "--etcd", "1-65535"),
        (["--control", "sw"], "--control", "IPv4"),
        (["--switch", ""], "--switch", "netns name"),
        (["--switch", "../sw"], "--switch", "netns name"),
        (["--node", "=4000"], "--node", "NETNS=PORT"),
        (["--node", "n1"], "--node", "NETNS=PORT"),
        (["--node", "../x=4000"], "--node", "NETNS=PORT"),
        (["--node", "n1=0"], "--node", "1-65535"),
        (["--node", "n1=4000", "--node", "n2=4000"], "--node", "must differ"),
    ],
)
def test_bad_input_names_the_flag(args: list[str], flag: str, rule: str) -> None:
    base = {"--etcd": "127.0.0.1:2379", "--switch": "sw", "--control": "10.250.0.254", "--node": "n1=4000"}
    overridden = {args[i] for i in range(0, len(args), 2)}
    argv = [x for k, v in base.items() if k not in overridden for x in (k, v)] + args
    with pytest.raises(InvalidArgument) as err:
        parse_args(argv)
    assert flag in str(err.value) and rule in str(err.value)


def test_no_node_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="--node"):
        parse_args(["--etcd", "127.0.0.1:2379", "--switch", "sw", "--control", "10.250.0.254"])


def test_the_module_exits_with_one_line_on_bad_input() -> None:
    argv = [sys.executable, "-m", "deploy.lab.relay", "--etcd", "10.0.0.1:1", "--switch", "sw"]
    argv += ["--control", "10.250.0.254", "--node", "n1=4000"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == InvalidArgument.exit_code
    assert result.stderr.strip().splitlines() == [
        "Error: invalid --etcd '10.0.0.1:1': must be a loopback IPv4 address"
    ]


def test_the_control_address_is_no_host_address() -> None:
    underlay = IPv4Network("10.250.0.0/24")
    assert str(control_address(underlay)) == "10.250.0.254"
    assert control_address(underlay) not in {host_address(underlay, i) for i in range(1, 51)}
