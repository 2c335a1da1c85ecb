"""flannel's Backend.Type -> backend class. DirectRouting is an option of vxlan (see direct.py)."""

from __future__ import annotations

from netplugin.backends.base import Backend
from netplugin.backends.hostgw import HostGwBackend
from netplugin.backends.vxlan import VxlanBackend

BACKENDS: dict[str, type[Backend]] = {
    VxlanBackend.type_name: VxlanBackend,
    HostGwBackend.type_name: HostGwBackend,
}

__all__ = ["BACKENDS", "Backend"]
