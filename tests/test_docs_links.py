"""Every relative link in the README, docs/ and the model card reaches a file, and every #anchor a heading in it:
the measurements live in docs/ and benchmarks/results/, and a moved section must not leave readers at a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "clarity_fast" / "data" / "MODEL_CARD.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.add(slug(line.lstrip("#")))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.name}: {broken}"


def test_slugs_follow_githubs_rule():
    assert slug("`clarity-fast detect`") == "clarity-fast-detect"
    assert slug("The prefilter's threshold") == "the-prefilters-threshold"
    assert slug("On a GPU (measured on an NVIDIA H100 server, 2026-11-26)") == "on-a-gpu-measured-on-an-nvidia-h100-server-2026-11-26"
