"""The Store seam. Import EtcdStore from controller.store.etcd and MemoryStore from
controller.store.memory directly: importing etcd3 costs ~0.2 s, so this package does not."""

from controller.store.base import (
    Compacted,
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Lease,
    Op,
    OpResult,
    Put,
    Store,
    TxnResult,
    Watch,
    absent,
    unchanged,
)

__all__ = [
    "Compacted",
    "Compare",
    "Delete",
    "Event",
    "Get",
    "KeyValue",
    "Lease",
    "Op",
    "OpResult",
    "Put",
    "Store",
    "TxnResult",
    "Watch",
    "absent",
    "unchanged",
]
