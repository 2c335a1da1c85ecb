#!/usr/bin/env bash
# Idempotent machine + venv setup for Shoal. Quick when nothing changed:
# system packages are checked with dpkg, the venv is rebuilt only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(runc busybox-static etcd-server docker-registry conmon skopeo umoci podman
              iproute2 iptables nftables prometheus iperf3 containernetworking-plugins)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Debian packages start their services on install; Shoal starts its own instances.
for svc in etcd docker-registry prometheus; do
    systemctl stop "$svc" >/dev/null 2>&1 || true
done

PY="${PYTHON:-python3}"
stamp=.venv/.shoal-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: building .venv" >&2
    "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
