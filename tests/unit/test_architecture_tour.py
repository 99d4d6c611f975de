"""The newcomer's tour in docs/architecture.md names only modules that exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ARCHITECTURE = Path(__file__).parents[2] / "docs" / "architecture.md"


def test_every_module_the_tour_names_exists() -> None:
    text = ARCHITECTURE.read_text()
    tour = text[text.index("## A newcomer's tour") : text.index("## Code layout and rules")]
    named = set(re.findall(r"`(ticketing(?:\.\w+)+)`", tour))
    assert len(named) >= 20
    missing = sorted(name for name in named if importlib.util.find_spec(name) is None)
    assert missing == []
