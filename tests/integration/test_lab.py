"""The netns lab itself: hosts reach each other over the switch; teardown leaves nothing."""

from __future__ import annotations

from tests.support.lab import Lab, lab_names_in_use, make_container_ns


def test_hosts_reach_each_other_and_teardown_is_exact() -> None:
    with Lab(hosts=3) as lab:
        prefix = lab.prefix
        for h in lab.all_hosts:
            assert len(h.netns) <= 15
            assert lab.exec(h, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
        target = lab.host(3).public_ip
        out = lab.exec(1, ["busybox", "ping", "-c", "1", "-W", "2", str(target)], check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        joined = lab.add_host()
        assert joined.index == 4
        assert (
            lab.exec(4, ["busybox", "ping", "-c", "1", "-W", "2", str(lab.host(1).public_ip)]).returncode == 0
        )
        c = make_container_ns(lab, 2)
        assert "lo" in lab.exec(c, ["ip", "-o", "link"]).stdout
        assert len(lab_names_in_use(prefix)) == 6
    assert lab_names_in_use(prefix) == []


def test_teardown_on_failure() -> None:
    prefix = ""
    try:
        with Lab(hosts=2) as lab:
            prefix = lab.prefix
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert prefix and lab_names_in_use(prefix) == []
