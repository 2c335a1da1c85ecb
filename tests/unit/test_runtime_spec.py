"""spec.py: Docker's defaults in the OCI config, and --user resolution against an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.errors import InvalidArgument
from agent.models import Resources
from agent.runtime.seccomp import BLOCKED_SYSCALLS
from agent.runtime.spec import (
    ALL_CAPS,
    DEFAULT_CAPS,
    DEFAULT_PATH_ENV,
    OciInputs,
    OciMount,
    build_oci_spec,
    resolve_user,
    secure_join,
)


def build(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"args": ["sh"], "rootfs": Path("/r"), "cgroups_path": "/shoal/c1", "nofile": 1024}
    return build_oci_spec(OciInputs(**{**base, **kw}), machine="x86_64")


def test_docker_default_capabilities() -> None:
    caps = build()["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}  # no inheritable/ambient
    assert len(DEFAULT_CAPS) == 14
    bits = sum(1 << ALL_CAPS.index(c) for c in caps["effective"])
    assert f"{bits:016x}" == "00000000a80425fb"  # Docker's CapEff
    assert caps["bounding"] == caps["permitted"] == caps["effective"]


def test_cap_add_normalises_and_validates() -> None:
    caps = build(cap_add=["net_admin", "CAP_SYS_TIME", "CHOWN"])["process"]["capabilities"]["effective"]
    assert caps[-2:] == ["CAP_NET_ADMIN", "CAP_SYS_TIME"] and len(caps) == 16
    assert build(cap_add=["ALL"])["process"]["capabilities"]["bounding"] == list(ALL_CAPS)
    with pytest.raises(InvalidArgument, match=r"--cap-add 'BOGUS'.*unknown capability"):
        build(cap_add=["BOGUS"])


def test_defaults_match_docker() -> None:
    s = build(hostname="web")
    assert s["ociVersion"] == "1.0.2"
    p = s["process"]
    assert p["noNewPrivileges"] is True and p["terminal"] is False
    assert p["env"][:2] == [DEFAULT_PATH_ENV, "HOSTNAME=web"]
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert s["hostname"] == "web"
    mounts = {m["destination"]: m for m in s["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    linux = s["linux"]
    assert {"/proc/asound", "/proc/kcore", "/sys/firmware"} <= set(linux["maskedPaths"])
    assert {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"} == set(
        linux["readonlyPaths"]
    )
    devices = linux["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    allowed = {(d.get("type"), d.get("major"), d.get("minor")) for d in devices[1:] if d["access"] == "rwm"}
    assert {("c", 1, 3), ("c", 1, 5), ("c", 1, 9), ("c", 5, 2), ("c", 136, None)} <= allowed
    seccomp = linux["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ALLOW"
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    rule = seccomp["syscalls"][0]
    assert rule["action"] == "SCMP_ACT_ERRNO" and rule["errnoRet"] == 1
    assert {"ptrace", "mount", "unshare", "bpf", "keyctl", "userfaultfd"} <= set(rule["names"])
    assert len(BLOCKED_SYSCALLS) == len(set(BLOCKED_SYSCALLS))


def test_env_path_and_hostname_not_duplicated() -> None:
    env = build(env=["PATH=/x", "HOSTNAME=h", "A=1"], hostname="web")["process"]["env"]
    assert env == ["PATH=/x", "HOSTNAME=h", "A=1"]


def test_privileged_drops_confinement() -> None:
    s = build(privileged=True, no_new_privileges=False)
    assert s["process"]["capabilities"]["effective"] == list(ALL_CAPS)
    assert s["process"]["noNewPrivileges"] is False
    for key in ("seccomp", "maskedPaths", "readonlyPaths"):
        assert key not in s["linux"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys_mount = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_mount["options"]


def test_resources_mapping() -> None:
    r = build(resources=Resources(memory_bytes=64 << 20, nano_cpus=1_500_000_000, pids_limit=100))
    res = r["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert res["cpu"] == {"quota": 150_000, "period": 100_000}
    assert res["pids"] == {"limit": 100}
    tiny = build(resources=Resources(nano_cpus=1_000_000))["linux"]["resources"]["cpu"]
    assert tiny["quota"] == 1000  # the kernel's minimum
    assert set(build()["linux"]["resources"]) == {"devices"}


def test_network_none_vs_host() -> None:
    def ns(network: str) -> list[str]:
        return [n["type"] for n in build(network=network)["linux"]["namespaces"]]

    assert ns("none") == ["pid", "ipc", "uts", "mount", "network"]
    assert ns("host") == ["pid", "ipc", "uts", "mount"]
    with pytest.raises(InvalidArgument, match="--network"):
        build(network="bridge")
    # The bridge network: runc joins the namespace the node network prepared.
    joined = build(network="none", netns_path="/run/netns/shoal-abc")["linux"]["namespaces"]
    assert joined[-1] == {"type": "network", "path": "/run/netns/shoal-abc"}


def test_user_mounts_replace_defaults() -> None:
    shm = OciMount("/dev/shm", "tmpfs", "tmpfs", ("size=1g",))
    data = OciMount("/data", "bind", "/srv/data", ("rbind", "ro"))
    s = build(mounts=[shm, data], uid=1000, gid=1000, additional_gids=[27], cwd="/data")
    dests = [m["destination"] for m in s["mounts"]]
    assert dests.count("/dev/shm") == 1 and dests[-2:] == ["/dev/shm", "/data"]
    assert s["mounts"][-2]["options"] == ["size=1g"]
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [27]}
    assert s["process"]["cwd"] == "/data"
    assert s["linux"]["cgroupsPath"] == "/shoal/c1"
    assert s["root"] == {"path": "/r", "readonly": False}


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"args": []}, "command"),
        ({"cwd": "tmp"}, "--workdir"),
        ({"uid": -1}, "uid"),
        ({"cgroups_path": "shoal/x"}, "cgroups_path"),
        ({"mounts": [OciMount("data", "bind", "/x")]}, "mount target"),
    ],
)
def test_invalid_inputs(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as exc:
        build(**kw)
    assert "\n" not in str(exc.value)


def test_aarch64_arches() -> None:
    s = build_oci_spec(OciInputs(args=["sh"], rootfs=Path("/r"), cgroups_path="/a/b"), machine="aarch64")
    assert s["linux"]["seccomp"]["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


# ---- resolve_user ------------------------------------------------------------------------------


@pytest.fixture
def image(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000::/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (tmp_path / "etc" / "group").write_text(
        "root:x:0:\nwheel:x:10:root,app\napp:x:1000:\ndocker:x:999:app\nnogroup:x:65534:\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, (0, 0, [10])),
        ("", (0, 0, [10])),
        ("app", (1000, 1000, [10, 999])),
        ("1000", (1000, 1000, [10, 999])),
        ("4242", (4242, 0, [])),  # unknown numeric uid: allowed, gid 0 (Docker)
        ("app:docker", (1000, 999, [])),  # an explicit group drops supplementary ones
        ("app:5", (1000, 5, [])),
        ("4242:4242", (4242, 4242, [])),
        ("nobody", (65534, 65534, [])),
    ],
)
def test_resolve_user(image: Path, user: str | None, expected: tuple[int, int, list[int]]) -> None:
    assert resolve_user(image, user) == expected


@pytest.mark.parametrize(
    ("user", "match"), [("ghost", "no user 'ghost'"), ("app:ghosts", "no group"), (":1", "expected name")]
)
def test_resolve_user_errors(image: Path, user: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as exc:
        resolve_user(image, user)
    assert str(exc.value).startswith("invalid --user")


def test_resolve_user_without_etc(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, None) == (0, 0, [])
    assert resolve_user(tmp_path, "7:8") == (7, 8, [])
    with pytest.raises(InvalidArgument):
        resolve_user(tmp_path, "app")


def test_symlinks_stay_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (tmp_path / "host-passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("../../../host-passwd")
    assert secure_join(root, "/etc/passwd") == root / "host-passwd"
    with pytest.raises(InvalidArgument, match="no user 'evil'"):
        resolve_user(root, "evil")
    (root / "lib").symlink_to("/etc")
    assert secure_join(root, "/lib/group") == root / "etc" / "group"
