"""flannel's subnet.env: written as flannel writes it, read back, refused when it is not ours."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from agent.errors import IntegrityError
from netplugin.daemon import gateway_of, previous_subnet
from netplugin.env import SubnetEnv, parse_subnet_env, read_subnet_env, write_subnet_env
from netplugin.subnet.leases import STATE_FILE

ENV = SubnetEnv(IPv4Network("10.244.0.0/16"), IPv4Network("10.244.3.0/24"), 1450)


def test_render_is_flannels_format() -> None:
    assert ENV.render() == (
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    )
    assert ENV.gateway == IPv4Interface("10.244.3.1/24") == gateway_of(ENV.subnet)


def test_write_then_read(tmp_path: Path) -> None:
    path = tmp_path / "run" / "subnet.env"
    assert read_subnet_env(path) is None
    write_subnet_env(path, ENV)
    assert read_subnet_env(path) == ENV
    assert sorted(p.name for p in path.parent.iterdir()) == ["subnet.env"], "no temp file left behind"


def test_a_file_written_by_flannel_parses() -> None:
    text = (
        "# written by flanneld\nFLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\n"
    )
    env = parse_subnet_env(text)
    assert (env.subnet, env.mtu, env.ipmasq) == (IPv4Network("10.1.17.0/24"), 1472, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FLANNEL_NETWORK=10.1.0.0/16\n", "x.env: FLANNEL_SUBNET is missing"),
        ("garbage\n", "x.env line 1: expected NAME=VALUE"),
        ("FLANNEL_NETWORK=a\nFLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1\n", "x.env: "),
        ("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=big\n", "x.env: "),
    ],
)
def test_unreadable_files_are_integrity_errors(text: str, message: str) -> None:
    with pytest.raises(IntegrityError) as err:
        parse_subnet_env(text, "x.env")
    assert str(err.value).startswith(message)


def test_previous_subnet_prefers_the_state_dir_then_subnet_env(tmp_path: Path) -> None:
    state, env_file = tmp_path / "state", tmp_path / "subnet.env"
    network = IPv4Network("10.244.0.0/16")
    assert previous_subnet(state, env_file, network) is None
    write_subnet_env(env_file, ENV)
    assert previous_subnet(state, env_file, network) == IPv4Network("10.244.3.0/24")
    assert previous_subnet(state, env_file, IPv4Network("10.9.0.0/16")) is None, "another network's subnet"
    state.mkdir()
    (state / STATE_FILE).write_text('{"subnet": "10.244.9.0/24", "public_ip": "10.250.0.1"}')
    assert previous_subnet(state, env_file, network) == IPv4Network("10.244.9.0/24")
    env_file.write_text("junk\n")
    (state / STATE_FILE).write_text("junk")
    assert previous_subnet(state, env_file, network) is None
