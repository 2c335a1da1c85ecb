"""Shapes the cluster commands print that are not API models (for `-o json|yaml`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StackSummary(BaseModel):
    """One line of `stack ls`."""

    model_config = ConfigDict(frozen=True)
    name: str
    services: int
