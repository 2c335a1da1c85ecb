"""Which subnet a node should lease: a pure decision over the leases that exist.

Order of preference (flannel's): the node's previous subnet when it is free or still ours (same
PublicIP), then any subnet the store still holds for our PublicIP, then a random free one among
the first CANDIDATES free subnets (random so that nodes starting together rarely race for the
same key; bounded so a huge network is not scanned end to end).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network

from agent.errors import ShoalError
from netplugin.config import NetworkConfig

CANDIDATES = 100


class OutOfSubnets(ShoalError):
    grpc_code = "RESOURCE_EXHAUSTED"


Owners = Mapping[IPv4Network, IPv4Address | None]
"""Leased subnet -> the PublicIP holding it (None: a lease whose value is unreadable)."""


def choose_subnet(
    config: NetworkConfig,
    taken: Owners,
    public_ip: IPv4Address,
    previous: IPv4Network | None,
    rng: random.Random,
) -> IPv4Network:
    """The subnet to lease; OutOfSubnets when every subnet of the configured range is taken."""
    blocked = _Intervals(iter(taken))
    if previous is not None and config.leasable(previous) and _free_or_ours(previous, taken, public_ip):
        return previous
    for sn in sorted(sn for sn, owner in taken.items() if owner == public_ip):
        if config.leasable(sn) and _free_or_ours(sn, taken, public_ip):
            return sn
    free = list(_free_subnets(config, blocked, CANDIDATES))
    if not free:
        raise OutOfSubnets(
            f"out of subnets: all {config.subnet_count} /{config.subnet_len} subnets of "
            f"{config.range_text()} are leased; widen Network or SubnetMin..SubnetMax"
        )
    return rng.choice(free)


def _free_or_ours(subnet: IPv4Network, taken: Owners, public_ip: IPv4Address) -> bool:
    """No lease overlaps `subnet` except, possibly, our own lease on exactly this subnet."""
    return all(
        not sn.overlaps(subnet) or (sn == subnet and owner == public_ip) for sn, owner in taken.items()
    )


class _Intervals:
    """Leased address ranges as sorted, merged [start, end] integer pairs."""

    def __init__(self, subnets: Iterator[IPv4Network]) -> None:
        spans = sorted((int(sn.network_address), int(sn.broadcast_address)) for sn in subnets)
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        self.starts = [s for s, _ in merged]
        self.spans = merged

    def first_overlap(self, start: int, end: int) -> tuple[int, int] | None:
        i = bisect.bisect_right(self.starts, end) - 1  # the last span starting at or before `end`
        if i >= 0 and self.spans[i][1] >= start:
            return self.spans[i]
        return None


def _free_subnets(config: NetworkConfig, blocked: _Intervals, limit: int) -> Iterator[IPv4Network]:
    """Up to `limit` free subnets, lowest first, skipping whole leased spans at a time."""
    size = 1 << (32 - config.subnet_len)
    cursor = int(config.first_subnet.network_address)
    last = int(config.last_subnet.network_address)
    found = 0
    while cursor <= last and found < limit:
        overlap = blocked.first_overlap(cursor, cursor + size - 1)
        if overlap is None:
            yield IPv4Network((cursor, config.subnet_len))
            found += 1
            cursor += size
        else:
            cursor = (overlap[1] // size + 1) * size  # the first aligned subnet after the span
