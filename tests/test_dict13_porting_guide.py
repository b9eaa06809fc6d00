"""docs/porting-from-python-diameter.md: every ```python block runs, in order, in one namespace
(the guide's examples are its tests), and its name tables name real classes and attributes."""

from __future__ import annotations

import re
from pathlib import Path

from chargegw.codec import commands, get_dictionary

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "porting-from-python-diameter.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(), re.M | re.S)


def test_the_guides_examples_run() -> None:
    found = blocks()
    assert len(found) >= 6
    ns: dict[str, object] = {"__name__": "porting_guide"}
    for i, code in enumerate(found, 1):
        exec(compile(code, f"{GUIDE.name} block {i}", "exec"), ns)  # noqa: S102
    # the blocking facade's example is among them, and it really exchanged answers
    assert any("BlockingNode(" in code and "send_request(" in code for code in found)
    assert [a.result_code for a in ns["answers"]] == [2001, 5030]  # type: ignore[attr-defined]


def test_the_guides_tables_name_what_exists() -> None:
    text = GUIDE.read_text()
    classes = set(commands.all_classes())
    named = set(re.findall(r"`((?:[A-Z][A-Za-z0-9]*)(?:Request|Answer))`", text))
    ours = {n for n in named if n in classes}
    assert len(ours) >= 20  # the chargegw column
    theirs = named - classes  # python-diameter names: each is one the guide maps away
    assert theirs <= {
        "AaRequest", "AaMobileNodeRequest", "HomeAgentMipRequest", "DiameterEapRequest",
        "MeIdentityCheckRequest", "PurgeUeRequest", "UpdateVcsgLocationRequest",
        "CancelVcsgLocationRequest",
    }, theirs  # fmt: skip
    attrs = get_dictionary().by_attr
    for row in re.findall(r"^\| `([a-z_0-9]+)`[^|]*\| `([a-z_0-9]+)`", text, re.M):
        assert row[1] in attrs, row  # every chargegw attribute in the table exists
