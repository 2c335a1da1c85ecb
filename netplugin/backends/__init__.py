"""Overlay backends (vxlan, host-gw, direct routing) turning subnet leases into data-plane entries."""
