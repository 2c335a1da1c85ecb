"""flannel's subnet.env: what a node's container tooling reads to size and address its bridge.

    FLANNEL_NETWORK=10.244.0.0/16
    FLANNEL_SUBNET=10.244.3.1/24     (the subnet's first address: the bridge's gateway)
    FLANNEL_MTU=1450
    FLANNEL_IPMASQ=true

Written atomically (temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from agent.errors import IntegrityError


@dataclass(frozen=True)
class SubnetEnv:
    network: IPv4Network
    subnet: IPv4Network
    mtu: int
    ipmasq: bool = True

    @property
    def gateway(self) -> IPv4Interface:
        """The subnet's first address with its prefix: the bridge's address."""
        return IPv4Interface((self.subnet.network_address + 1, self.subnet.prefixlen))

    def render(self) -> str:
        return (
            f"FLANNEL_NETWORK={self.network}\n"
            f"FLANNEL_SUBNET={self.gateway}\n"
            f"FLANNEL_MTU={self.mtu}\n"
            f"FLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}\n"
        )


def parse_subnet_env(text: str, source: str = "subnet.env") -> SubnetEnv:
    """IntegrityError naming the file and the line for anything that is not ours to read."""
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise IntegrityError(f"{source} line {n}: expected NAME=VALUE, got {line!r}")
        values[name.strip()] = value.strip()
    try:
        subnet = IPv4Interface(values["FLANNEL_SUBNET"]).network
        return SubnetEnv(
            network=IPv4Network(values["FLANNEL_NETWORK"]),
            subnet=subnet,
            mtu=int(values["FLANNEL_MTU"]),
            ipmasq=values.get("FLANNEL_IPMASQ", "false") == "true",
        )
    except KeyError as e:
        raise IntegrityError(f"{source}: {e.args[0]} is missing") from None
    except ValueError as e:
        raise IntegrityError(f"{source}: {e}") from None


def write_subnet_env(path: Path, env: SubnetEnv) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(env.render())
    os.replace(tmp, path)


def read_subnet_env(path: Path) -> SubnetEnv | None:
    """The file's content, or None when there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse_subnet_env(text, str(path))
