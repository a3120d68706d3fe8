"""What the README says of the event log is what the code writes."""

from __future__ import annotations

import re
from pathlib import Path

from activator.model import EventKind

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_every_event_kind_and_no_other() -> None:
    text = README.read_text()
    start = text.index("Every change is an event row")
    paragraph = text[start : text.index("\n\n", start)]
    listed = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert listed == {kind.value for kind in EventKind}
