"""Node IPAM: host-local style files that survive restarts and never hand one address out twice."""

from __future__ import annotations

import multiprocessing
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from agent.errors import Conflict, InvalidArgument
from netplugin.ipam import Ipam, gateway_of

SUBNET = IPv4Network("10.44.7.0/24")


def test_addresses_skip_network_gateway_and_broadcast(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, IPv4Network("10.44.7.0/29"))
    got = [ipam.allocate(f"c{i}") for i in range(ipam.capacity())]
    assert [str(a) for a in got] == [f"10.44.7.{i}/29" for i in range(2, 7)]
    assert ipam.gateway == IPv4Interface("10.44.7.1/29") == gateway_of(ipam.subnet)
    with pytest.raises(Conflict, match=r"subnet 10\.44\.7\.0/29 has no free address: all 5"):
        ipam.allocate("one-too-many")


def test_allocate_is_idempotent_per_container(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, SUBNET)
    first = ipam.allocate("web.1")
    assert ipam.allocate("web.1") == first
    assert ipam.claim("web.1") == (first, False)
    assert ipam.lookup("web.1") == first
    assert ipam.lookup("other") is None
    assert ipam.allocations() == {first.ip: "web.1"}


def test_state_survives_a_restart_and_is_never_double_allocated(tmp_path: Path) -> None:
    before = Ipam(tmp_path, SUBNET)
    held = {cid: before.allocate(cid) for cid in ("a", "b", "c")}
    after = Ipam(tmp_path, SUBNET)  # a restarted agent over the same directory
    assert {cid: after.allocate(cid) for cid in held} == held
    new = after.allocate("d")
    assert new not in held.values()
    assert set(after.allocations().values()) == {"a", "b", "c", "d"}


def test_release_frees_and_allocation_goes_round_before_reusing(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, IPv4Network("10.44.7.0/29"))
    a, b = ipam.allocate("a"), ipam.allocate("b")
    assert ipam.release("a") == [a.ip]
    assert ipam.release("a") == []  # idempotent
    c = ipam.allocate("c")
    assert c not in (a, b)  # the freed address is not handed out straight away
    assert [str(ipam.allocate(f"fill{i}").ip) for i in range(2)] == ["10.44.7.5", "10.44.7.6"]
    assert ipam.allocate("e") == a  # ... but is once the round comes back to it


def test_leaked_names_allocations_without_a_live_container(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, SUBNET)
    a = ipam.allocate("alive")
    b = ipam.allocate("gone")
    assert ipam.leaked(live={"alive"}) == {b.ip: "gone"}
    assert ipam.leaked() == {a.ip: "alive", b.ip: "gone"}
    ipam.release("gone")
    ipam.release("alive")
    assert ipam.leaked() == {}


def test_an_address_from_an_older_subnet_is_replaced(tmp_path: Path) -> None:
    old = Ipam(tmp_path, IPv4Network("10.44.1.0/24")).allocate("c1")
    new = Ipam(tmp_path, IPv4Network("10.44.2.0/24"))
    got = new.allocate("c1")
    assert got.ip in new.subnet
    assert new.allocations() == {got.ip: "c1"}  # the unusable old address was freed
    assert old.ip not in new.allocations()


def test_stray_files_are_ignored(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, SUBNET)
    (ipam.dir / ".10.44.7.9.tmp").write_text("half-written\n")  # a crash between write and rename
    (ipam.dir / "README").write_text("not ours\n")
    assert ipam.allocate("x") == IPv4Interface("10.44.7.2/24")
    assert ipam.allocations() == {IPv4Address("10.44.7.2"): "x"}


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "-lead", "x" * 129, "sp ace"])
def test_bad_container_ids_are_refused(tmp_path: Path, bad: str) -> None:
    ipam = Ipam(tmp_path, SUBNET)
    with pytest.raises(InvalidArgument, match=r"invalid container_id .*: must be 1-128"):
        ipam.allocate(bad)
    assert ipam.allocations() == {}


def test_bad_subnet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"invalid subnet '10\.0\.0\.0/31': must leave room for a gateway and containers",
    ):
        Ipam(tmp_path, IPv4Network("10.0.0.0/31"))


def _allocate_many(args: tuple[str, int, int]) -> list[str]:
    state_dir, worker, count = args
    ipam = Ipam(Path(state_dir), SUBNET)
    return [str(ipam.allocate(f"w{worker}-{i}").ip) for i in range(count)]


def test_processes_sharing_the_directory_never_get_the_same_address(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.map(_allocate_many, [(str(tmp_path), w, 50) for w in range(4)])
    every = [ip for chunk in results for ip in chunk]
    assert len(every) == 200 == len(set(every))
    assert len(Ipam(tmp_path, SUBNET).allocations()) == 200
