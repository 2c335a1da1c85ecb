"""Tests use the same local registry launcher as the demo."""

from deploy.registry import Registry, free_port, import_busybox, push_busybox

__all__ = ["Registry", "free_port", "import_busybox", "push_busybox"]
