"""Choosing a subnet: previous first, then ours by PublicIP, then a random free one; never a taken one."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplugin.config import NetworkConfig, validate_config
from netplugin.subnet.allocator import CANDIDATES, OutOfSubnets, choose_subnet

ME = IPv4Address("10.250.0.1")
OTHER = IPv4Address("10.250.0.2")
CONFIG = validate_config({"Network": "10.244.0.0/16"})
SMALL = validate_config({"Network": "10.244.0.0/22"})  # three leasable /24s: .1, .2, .3


def sn(text: str) -> IPv4Network:
    return IPv4Network(text)


def test_previous_subnet_is_reused_when_free() -> None:
    assert choose_subnet(CONFIG, {}, ME, sn("10.244.7.0/24"), random.Random(1)) == sn("10.244.7.0/24")


def test_previous_subnet_still_held_by_our_public_ip_is_reused() -> None:
    taken = {sn("10.244.7.0/24"): ME}
    assert choose_subnet(CONFIG, taken, ME, sn("10.244.7.0/24"), random.Random(1)) == sn("10.244.7.0/24")


def test_previous_subnet_taken_by_another_node_is_not_reused() -> None:
    taken = {sn("10.244.7.0/24"): OTHER}
    assert choose_subnet(CONFIG, taken, ME, sn("10.244.7.0/24"), random.Random(1)) != sn("10.244.7.0/24")


@pytest.mark.parametrize("previous", ["10.244.0.0/24", "10.245.1.0/24", "10.244.4.0/23", "10.244.8.0/25"])
def test_previous_subnet_outside_the_config_is_ignored(previous: str) -> None:
    got = choose_subnet(CONFIG, {}, ME, sn(previous), random.Random(1))
    assert CONFIG.leasable(got) and got != sn(previous)


def test_a_lease_found_by_our_public_ip_is_reused_without_a_previous_subnet() -> None:
    taken = {sn("10.244.1.0/24"): OTHER, sn("10.244.9.0/24"): ME}
    assert choose_subnet(CONFIG, taken, ME, None, random.Random(1)) == sn("10.244.9.0/24")


def test_unreadable_leases_block_their_subnet() -> None:
    taken: dict[IPv4Network, IPv4Address | None] = {sn("10.244.1.0/24"): None, sn("10.244.2.0/24"): OTHER}
    assert choose_subnet(SMALL, taken, ME, sn("10.244.1.0/24"), random.Random(1)) == sn("10.244.3.0/24")


def test_leases_of_another_length_block_every_subnet_they_overlap() -> None:
    taken: dict[IPv4Network, IPv4Address | None] = {sn("10.244.0.0/23"): OTHER}  # covers .0 and .1
    assert choose_subnet(SMALL, taken, ME, None, random.Random(1)) in {
        sn("10.244.2.0/24"),
        sn("10.244.3.0/24"),
    }


def test_random_choice_is_seeded_and_spread_over_the_first_free_subnets() -> None:
    picks = {choose_subnet(CONFIG, {}, ME, None, random.Random(seed)) for seed in range(50)}
    assert len(picks) > 1
    assert all(CONFIG.leasable(p) for p in picks)
    assert (
        max(int(p.network_address) for p in picks)
        < int(CONFIG.first_subnet.network_address) + CANDIDATES * 256
    )
    assert choose_subnet(CONFIG, {}, ME, None, random.Random(7)) == choose_subnet(
        CONFIG, {}, ME, None, random.Random(7)
    )


def test_out_of_subnets_names_the_range_and_count() -> None:
    taken: dict[IPv4Network, IPv4Address | None] = {sn(f"10.244.{i}.0/24"): OTHER for i in (1, 2, 3)}
    with pytest.raises(OutOfSubnets) as err:
        choose_subnet(SMALL, taken, ME, None, random.Random(1))
    assert str(err.value) == (
        "out of subnets: all 3 /24 subnets of 10.244.1.0/24..10.244.3.0/24 are leased; "
        "widen Network or SubnetMin..SubnetMax"
    )


def test_a_crowded_big_network_is_not_scanned_subnet_by_subnet() -> None:
    big = validate_config({"Network": "10.0.0.0/8", "SubnetLen": 30})
    taken: dict[IPv4Network, IPv4Address | None] = {sn("10.0.0.0/9"): OTHER, sn("10.128.0.0/10"): OTHER}
    got = choose_subnet(big, taken, ME, None, random.Random(1))
    assert got.subnet_of(sn("10.192.0.0/10"))


configs = st.sampled_from(
    [
        SMALL,
        validate_config({"Network": "10.244.0.0/20"}),
        validate_config({"Network": "10.244.0.0/20", "SubnetLen": 26}),
        validate_config({"Network": "10.244.0.0/20", "SubnetMin": "10.244.4.0", "SubnetMax": "10.244.9.0"}),
        validate_config({"Network": "10.244.0.0/26"}),
    ]
)


@st.composite
def worlds(
    draw: st.DrawFn,
) -> tuple[NetworkConfig, dict[IPv4Network, IPv4Address | None], IPv4Network | None]:
    config = draw(configs)
    net = config.network
    owner = st.sampled_from([ME, OTHER, IPv4Address("10.250.0.3"), None])
    lengths = st.integers(min_value=net.prefixlen, max_value=min(net.prefixlen + 8, 30))
    taken: dict[IPv4Network, IPv4Address | None] = {}
    for length, index, who in draw(st.lists(st.tuples(lengths, st.integers(0, 1 << 20), owner), max_size=20)):
        size = 1 << (32 - length)
        start = int(net.network_address) + (index * size) % net.num_addresses
        taken[IPv4Network((start, length))] = who
    previous = draw(
        st.one_of(st.none(), st.sampled_from(list(config.subnets())), st.sampled_from(list(taken) or [net]))
    )
    return config, taken, previous


@given(worlds(), st.integers())
def test_never_a_taken_or_out_of_range_subnet(
    world: tuple[NetworkConfig, dict[IPv4Network, IPv4Address | None], IPv4Network | None], seed: int
) -> None:
    config, taken, previous = world
    free = [s for s in config.subnets() if not any(s.overlaps(t) for t in taken)]
    ours = [s for s, who in taken.items() if who == ME and config.leasable(s)]
    ours = [s for s in ours if all(not t.overlaps(s) or (t == s and w == ME) for t, w in taken.items())]
    try:
        got = choose_subnet(config, taken, ME, previous, random.Random(seed))
    except OutOfSubnets:
        assert not free and not ours
        return
    assert config.leasable(got)
    assert got in free or got in ours, "only a free subnet or one our PublicIP already holds"
    if previous is not None and (previous in free or previous in ours):
        assert got == previous
