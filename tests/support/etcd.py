"""Tests start etcd with the same launcher as the local lab."""

from controller.store.etcd_server import EtcdServer

__all__ = ["EtcdServer"]
