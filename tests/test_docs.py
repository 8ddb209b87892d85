"""The docs point at things that exist: every relative markdown link resolves to a file or folder, every
`src/poolhead/...` path written in backticks exists, and the README's code map lists the subpackages that are there.
Reads text only (no torch, no poolhead import): milliseconds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "benchmarks" / "README.md",
               *(ROOT / "benchmarks").glob("*/README.md"), *(ROOT / "experiments").glob("*/README.md")])
PATH_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target "title"); images apart
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
SRC_PATH = re.compile(r"`(src/poolhead/[^`\s]*)`")


def prose(path: Path) -> str:
    """The file without its fenced code blocks: a `[x](y)` inside code is code, not a link."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def relative_targets(path: Path) -> list[str]:
    text = prose(path)
    targets = LINK.findall(text) + IMAGE.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    missing = [t for t in relative_targets(doc) if not (doc.parent / t.split("#", 1)[0]).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} links to paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", PATH_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_src_path_in_backticks_exists(doc):
    paths = SRC_PATH.findall(doc.read_text(encoding="utf-8"))
    missing = [p for p in paths if not (ROOT / p.rstrip(".,:;")).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def code_map() -> list[str]:
    """The entries under `src/poolhead/` in README.md's code map (the fenced block that starts with train.py)."""
    block = next(b for b in FENCE.findall((ROOT / "README.md").read_text(encoding="utf-8"))
                 if b.split("\n", 1)[1].startswith("train.py"))
    lines = block.split("\n")[1:-1]
    start = next(i for i, line in enumerate(lines) if line.startswith("src/poolhead/"))
    entries = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        entries.append(line.split()[0])
    return entries


def test_readme_code_map_matches_the_tree():
    entries = code_map()
    package = ROOT / "src" / "poolhead"
    missing = [e for e in entries if not (package / e).exists()]
    assert not missing, f"README.md's code map lists what src/poolhead/ does not hold: {missing}"
    subpackages = sorted(f"{p.parent.name}/" for p in package.glob("*/__init__.py"))
    unlisted = [s for s in subpackages if s not in entries]
    assert not unlisted, f"src/poolhead/ subpackages missing from README.md's code map: {unlisted}"


def test_the_link_check_sees_links():
    """A regex that matched nothing would pass every file: the README does link to docs/."""
    assert "docs/sweeps.md" in relative_targets(ROOT / "README.md")
    assert "core/" in code_map()
