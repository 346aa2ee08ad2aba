"""The documentation: the MkDocs site builds in strict mode with every page in its nav, and the README stays a
short, impersonal introduction (the measured studies live in docs/)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MKDOCS_YML = ROOT / "mkdocs.yml"
DOCS = ROOT / "docs"
MAX_README_LINES = 250


def nav_pages() -> list[str]:
    """Every page file named in mkdocs.yml's nav (nested sections included), in nav order."""
    pages: list[str] = []

    def walk(entry):
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)

    walk(yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))["nav"])
    return [p for p in pages if p.endswith(".md")]


def prose(markdown: str) -> str:
    """The text outside fenced code blocks, indented code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```[^\n]*$", "", markdown, flags=re.S | re.M)
    text = re.sub(r"^(?: {4}|\t).*$", "", text, flags=re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def test_nav_lists_every_page():
    pages = nav_pages()
    assert "index.md" in pages
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk, "every page under docs/ belongs in mkdocs.yml's nav, and only those"


def test_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        print(done.stdout)
        print(done.stderr)
    assert done.returncode == 0, done.stderr
    assert (site / "index.html").is_file()
    for page in nav_pages():
        html = site / (page[: -len(".md")] + ".html")  # use_directory_urls: false
        assert html.is_file(), f"{page} was not built to {html.name}"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_has_no_issue_references():
    text = prose(README.read_text(encoding="utf-8"))
    assert not re.findall(r"\bissue\s*#?\d+", text, re.I)
    assert not re.findall(r"#\d+", text)


def test_readme_is_not_written_in_the_first_person():
    text = prose(README.read_text(encoding="utf-8"))
    found = re.findall(r"\bI\b", text) + re.findall(r"\b(?:we|our|my|us)\b", text, re.I)
    assert not found, f"first person in README.md: {sorted(set(found))}"


def test_readme_points_at_existing_docs_pages():
    named = set(re.findall(r"docs/([\w-]+\.md)", README.read_text(encoding="utf-8")))
    assert named, "the README should point readers at the docs pages"
    assert {name for name in named if not (DOCS / name).is_file()} == set()
    assert named <= set(nav_pages())
