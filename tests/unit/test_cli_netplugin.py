"""`shoal netplugin` and `shoal network config`: flags build the config; bad input is one line, exit 3."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli.main import app
from netplugin.daemon import NetpluginConfig


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_flags_build_the_daemon_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[NetpluginConfig] = []
    monkeypatch.setattr("netplugin.daemon.run", seen.append)
    code, _, err = invoke(
        "netplugin",
        "--etcd",
        "http://127.0.0.1:2379, 127.0.0.2:2379",
        "--public-ip",
        "10.250.0.2",
        "--iface",
        "eth0",
        "--prefix",
        "/shoal/net/",
        "--lease-ttl",
        "5",
        "--state-dir",
        str(tmp_path / "state"),
        "--subnet-file",
        str(tmp_path / "subnet.env"),
    )
    assert code == 0, err
    [config] = seen
    assert config == NetpluginConfig(
        etcd_endpoints=("http://127.0.0.1:2379", "127.0.0.2:2379"),
        public_ip=IPv4Address("10.250.0.2"),
        iface="eth0",
        netns=None,
        prefix="/shoal/net",
        lease_ttl=5,
        state_dir=tmp_path / "state",
        subnet_file=tmp_path / "subnet.env",
    )


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[NetpluginConfig] = []
    monkeypatch.setattr("netplugin.daemon.run", seen.append)
    assert invoke("netplugin", "--public-ip", "10.0.0.5")[0] == 0
    [config] = seen
    assert (config.etcd_endpoints, config.prefix, config.lease_ttl) == (
        ("127.0.0.1:2379",),
        "/coreos.com/network",
        30,
    )
    assert (config.state_dir, config.subnet_file) == (
        Path("/var/lib/shoal/net"),
        Path("/run/shoal/subnet.env"),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--public-ip", "10.0.0"], "Error: invalid --public-ip '10.0.0': expected an IPv4 address"),
        (["--public-ip", "fd00::1"], "Error: invalid --public-ip 'fd00::1': expected an IPv4 address"),
        (
            ["--public-ip", "10.0.0.5", "--etcd", "localhost"],
            "Error: invalid --etcd 'localhost': expected host:port",
        ),
        (
            ["--public-ip", "10.0.0.5", "--etcd", "h:99999"],
            "Error: invalid --etcd 'h:99999': the port must be",
        ),
        (
            ["--public-ip", "10.0.0.5", "--iface", "x" * 16],
            "Error: invalid --iface 'xxxxxxxxxxxxxxxx': interface",
        ),
        (
            ["--public-ip", "10.0.0.5", "--netns", "shoaltest-nope"],
            "Error: invalid --netns 'shoaltest-nope': no such",
        ),
        (
            ["--public-ip", "10.0.0.5", "--lease-ttl", "0"],
            "Error: invalid --lease-ttl 0: must be at least 1 second",
        ),
        (
            ["--public-ip", "10.0.0.5", "--prefix", "coreos"],
            "Error: invalid --prefix 'coreos': expected an absolute",
        ),
    ],
)
def test_bad_flags_are_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setattr("netplugin.daemon.run", lambda config: pytest.fail("must not start"))
    code, _, err = invoke("netplugin", *args)
    assert code == 3
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_public_ip_is_required() -> None:
    code, _, err = invoke("netplugin")
    assert code == 2
    assert "--public-ip" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network", "10.244.1.0/16"], "Error: invalid Network '10.244.1.0/16': host bits are set"),
        (
            ["--network", "10.244.0.0/16", "--backend", "udp"],
            "Error: invalid Backend.Type 'udp': unknown backend",
        ),
        (
            ["--network", "10.244.0.0/16", "--subnet-len", "8"],
            "Error: invalid SubnetLen 8: must be between 18 and 30",
        ),
        (
            ["--network", "10.244.0.0/16", "--backend", "host-gw", "--direct-routing"],
            "Error: invalid --direct-routing True: only applies to --backend vxlan",
        ),
        (
            ["--network", "10.244.0.0/16", "--vni", "0"],
            "Error: invalid Backend.VNI 0: must be between 1 and 16777215",
        ),
        (["--network", "10.244.0.0/16", "--etcd", "x"], "Error: invalid --etcd 'x'"),
    ],
)
def test_config_set_refuses_bad_input_before_touching_etcd(args: list[str], message: str) -> None:
    # No etcd runs at the default endpoint: reaching it would fail differently (exit 1).
    code, out, err = invoke("network", "config", "set", *args)
    assert (code, out) == (3, "")
    assert err.startswith(message), err
