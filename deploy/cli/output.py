"""How results look: docker-like tables for people, the models' JSON for programs.

`-o json` prints exactly the API models (`model_dump(mode="json")`), indented, in field
order, so scripts can rely on it as they rely on the API.
"""

from __future__ import annotations

import io
import json
import shlex
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from deploy.cli.common import parse_time

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agent.models import ContainerInfo, ContainerState, ImageInfo

OUTPUT_FORMATS = ("table", "json")


def print_json(value: BaseModel | Sequence[BaseModel]) -> None:
    if isinstance(value, Sequence):
        data: Any = [item.model_dump(mode="json") for item in value]
    else:
        data = value.model_dump(mode="json")
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Borderless, three spaces between columns, no wrapping (like docker's tabwriter)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    tty = sys.stdout.isatty()
    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold" if tty else "")
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: cell values are never markup
    buffer = io.StringIO()
    # Wide virtual console: long rows run past the terminal's edge rather than being
    # squeezed or cut, as with docker; the terminal wraps them if it must.
    console = Console(
        file=buffer, width=100_000, force_terminal=tty, color_system="standard" if tty else None
    )
    console.print(table)
    sys.stdout.write("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n")


# ---- value formatting --------------------------------------------------------------------


def short_id(full: str) -> str:
    return full.removeprefix("sha256:")[:12]


def human_duration(seconds: float) -> str:
    """Docker's `units.HumanDuration`."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def since(timestamp: str, now: datetime | None = None) -> float | None:
    parsed = parse_time(timestamp)
    if parsed is None:
        return None
    return max(0.0, ((now or datetime.now(UTC)) - parsed).total_seconds())


def ago(timestamp: str, now: datetime | None = None) -> str:
    elapsed = since(timestamp, now)
    return "" if elapsed is None else f"{human_duration(elapsed)} ago"


def container_status(state: ContainerState, now: datetime | None = None, health: str = "") -> str:
    """Docker's STATUS column: "Up 3 seconds", "Exited (3) 5 seconds ago", "Restarting (1) ...";
    a running container's health follows: "Up 3 seconds (healthy)", "(health: starting)"."""
    if state.status == "running":
        up = since(state.started_at, now)
        text = "Up" if up is None else f"Up {human_duration(up)}"
        if health:
            text += " (health: starting)" if health == "starting" else f" ({health})"
        return text
    if state.status == "exited":
        when = ago(state.finished_at, now)
        return f"Exited ({state.exit_code}) {when}".rstrip()
    if state.status == "restarting":
        when = ago(state.finished_at, now)
        return f"Restarting ({state.exit_code}) {when}".rstrip()
    return state.status.capitalize()  # Created, Dead


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def human_size(size: float) -> str:
    """Docker's decimal sizes with three significant digits: 4.26MB, 512kB."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def human_bytes(size: float) -> str:
    """Binary units, as `docker stats`: 1.5MiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


# ---- tables ------------------------------------------------------------------------------


def containers_table(containers: Sequence[ContainerInfo], no_trunc: bool = False) -> None:
    now = datetime.now(UTC)
    rows = []
    for c in sorted(containers, key=lambda c: c.created, reverse=True):  # newest first
        command = shlex.join(c.args)
        rows.append(
            [
                c.id if no_trunc else short_id(c.id),
                c.image,
                '"' + (command if no_trunc else ellipsis(command, 20)) + '"',
                ago(c.created, now),
                container_status(c.state, now, c.health.status if c.health else ""),
                c.name,
            ]
        )
    print_table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"], rows)


def split_repo_tag(ref: str) -> tuple[str, str]:
    """`registry:5000/a/b:tag` -> (`registry:5000/a/b`, `tag`); the tag follows the last `/`."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "<none>"


def images_table(images: Sequence[ImageInfo], no_trunc: bool = False) -> None:
    now = datetime.now(UTC)
    rows = []
    for image in sorted(images, key=lambda i: i.created, reverse=True):
        image_id = image.id if no_trunc else short_id(image.id)
        for tag in image.repo_tags or ["<none>:<none>"]:
            repo, name = split_repo_tag(tag)
            rows.append([repo, name, image_id, ago(image.created, now), human_size(image.size)])
    print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)


# ---- cluster objects: json, yaml and tables ----------------------------------------------

CLUSTER_FORMATS = ("table", "json", "yaml")


def print_yaml(value: BaseModel | Sequence[BaseModel]) -> None:
    """The same data as `-o json`, as YAML (block style, keys in field order)."""
    from ruamel.yaml import YAML

    if isinstance(value, Sequence):
        data: Any = [item.model_dump(mode="json") for item in value]
    else:
        data = value.model_dump(mode="json")
    yaml = YAML()  # round-trip mode: keeps the models' field order (safe mode sorts keys)
    yaml.default_flow_style = False
    yaml.dump(data, sys.stdout)


def print_structured(value: BaseModel | Sequence[BaseModel], fmt: str) -> None:
    """`-o json` or `-o yaml`."""
    if fmt == "yaml":
        print_yaml(value)
    else:
        print_json(value)
