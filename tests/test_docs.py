"""The docs point at things that exist: every relative markdown link resolves to a file or folder (and its
#anchor to a heading there), every `src/poolhead/...` path written in backticks exists, the README's code map
lists the subpackages that are there, and every committed benchmark result is cited by a doc. Reads text only
(no torch, no poolhead import): milliseconds."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# all of benchmarks/ but runs/, the git-ignored scratch folder of each benchmark run
BENCH_DOCS = [p for p in (ROOT / "benchmarks").rglob("*.md") if "runs" not in p.relative_to(ROOT).parts]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *BENCH_DOCS,
               *(ROOT / "experiments").glob("*/README.md")])
PATH_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target "title"); images apart
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
SRC_PATH = re.compile(r"`(src/poolhead/[^`\s]*)`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
RESULTS = ROOT / "benchmarks" / "results"


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


def anchors(path: Path) -> set[str]:
    """The #anchors GitHub gives a markdown file's headings: lower case, punctuation dropped, spaces '-'."""
    headings = HEADING.findall(prose(path))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def anchored_links(doc: Path) -> list[tuple[Path, str]]:
    """(markdown file, anchor) for each link of `doc` with a #anchor into a markdown file, itself included."""
    links = LINK.findall(prose(doc))
    out = []
    for target in links:
        path, _, anchor = target.partition("#")
        if anchor and not re.match(r"^[a-z][a-z0-9+.-]*:", path) and (not path or path.endswith(".md")):
            out.append(((doc.parent / path) if path else doc, anchor))
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_anchor_resolves(doc):
    missing = [f"{p.name}#{a}" for p, a in anchored_links(doc) if p.exists() and a not in anchors(p)]
    assert not missing, f"{doc.relative_to(ROOT)} links to headings that do not exist: {missing}"


def committed_results() -> list[str]:
    """The file names git tracks under benchmarks/results/ (what a clone gets)."""
    out = subprocess.run(["git", "ls-files", "benchmarks/results"], cwd=ROOT, capture_output=True, text=True)
    return [Path(line).name for line in out.stdout.split()] if out.returncode == 0 else []


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_every_committed_result_is_cited():
    """A result nothing cites is a lab notebook page: results/ keeps what the docs link (a run.py report's
    .json goes with its cited .md). Fails when a result is committed uncited or loses its last citation."""
    cited = set()
    for doc in [*DOCS, *PATH_DOCS]:
        cited |= {Path(t).name for t in relative_targets(doc) if "results/" in t}
    cited |= {name.replace(".md", ".json") for name in cited if name.endswith(".md")
              and (RESULTS / name).exists() and "JSON next to this file" in (RESULTS / name).read_text()}
    uncited = sorted(set(committed_results()) - cited)
    assert not uncited, f"benchmarks/results/ holds files no doc cites (cite them or git rm them): {uncited}"


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
    assert RESULTS / "20261201-134419-ab.md" in DOCS  # benchmarks/ markdown at any depth
    assert "findings" in anchors(ROOT / "benchmarks" / "README.md")
    assert (ROOT / "docs" / "speed.md", "why-these-defaults") in anchored_links(ROOT / "docs" / "speed.md")
    assert "core/" in code_map()
