"""The overlay data plane: pure entries + diff (model), the pyroute2 driver (netlink), a fake."""
