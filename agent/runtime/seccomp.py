"""The default seccomp profile: a deny-list modelled on Docker's default profile.

Docker's real profile is an allow-list (default ERRNO, ~350 syscalls allowed, some only
with a capability). We keep the simpler inverse: allow everything except the syscalls
Docker never allows to an unprivileged container (kernel modules, clock setting,
keyrings, tracing other processes, namespaces and mounts, NUMA policy, obsolete calls).
The capabilities we drop already deny most of these; seccomp is the second fence for
kernel attack surface reachable without a capability (bpf, userfaultfd, perf, keyctl).
"""

from __future__ import annotations

import platform
from typing import Any

EPERM = 1

BLOCKED_SYSCALLS: tuple[str, ...] = (
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapon",
    "swapoff",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)

# A filter must cover every ABI a process can switch to, or a 32-bit syscall bypasses it.
_ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """The OCI `linux.seccomp` object for `machine` (defaults to this host's)."""
    machine = machine or platform.machine()
    arches = _ARCHITECTURES.get("aarch64" if machine == "arm64" else machine, [])
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(arches),
        # runc skips names its libseccomp does not know for these arches (vm86 on x86_64).
        "syscalls": [
            {"names": list(BLOCKED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        ],
    }
