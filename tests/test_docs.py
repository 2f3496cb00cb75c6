"""The project's science reference, ``docs/science.md``, is the document the code cites
(``docs/science.md`` section N): it lives in the repository and is kept identical to the
shared copy, ``../shared/docs/science.md`` (beside the shared data folder), when that is present.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prospect.io.manifests import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
SCIENCE = ROOT / "docs" / "science.md"


def test_science_reference_is_in_the_repository():
    text = SCIENCE.read_text(encoding="utf-8")
    assert text.strip(), f"{SCIENCE} is empty"


def test_science_reference_equals_the_shared_copy():
    shared = shared_data_dir().parent / "docs" / "science.md"
    if not shared.is_file():
        pytest.skip(f"shared science reference {shared} is absent")
    assert SCIENCE.read_bytes() == shared.read_bytes(), (
        f"{SCIENCE} differs from {shared}: copy the shared one over (they are one document)"
    )


def test_cited_sections_exist():
    """Every ``docs/science.md`` section N the package cites is a numbered heading there."""
    headings = set(re.findall(r"^#+\s*(\d+)[.\s]", SCIENCE.read_text(encoding="utf-8"), flags=re.MULTILINE))
    cited = set()
    for py in (ROOT / "prospect").rglob("*.py"):
        text = " ".join(py.read_text(encoding="utf-8").split())  # citations may wrap across lines
        cited |= set(re.findall(r"docs/science\.md`*,? section (\d+)", text))
    assert cited, "no docs/science.md section citations found"
    assert cited <= headings, f"cited sections missing from {SCIENCE}: {sorted(cited - headings)}"
