"""The docs as a reader meets them: the README stays a short front door, every relative link of the README,
app/README.md, bench/README.md and docs/*.md leads to a file, folder or heading of the repository, and no
page names a path outside it."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CANDIDATES = [README, ROOT / "app" / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES = [path for path in CANDIDATES if path.is_file()]
IDS = [str(path.relative_to(ROOT)) for path in PAGES]
OUTSIDE = ["../shared", "shared/seed", "/work/"]

FENCED = re.compile(r"^(```|~~~).*?^\1[^\n]*$", flags=re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", flags=re.MULTILINE)


def prose(text):
    """The text without fenced code blocks, where a `#` or `[x](y)` is code, not Markdown."""
    return FENCED.sub("", text)


def slug(heading):
    """GitHub's anchor of a heading: its text, lower case, without punctuation, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path):
    """Every heading's anchor in a Markdown file, with GitHub's -1, -2 ... for repeated ones."""
    seen, found = {}, set()
    for heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def relative_links(path):
    """The links of a page that point into the repository (no scheme, no mail address)."""
    text = INLINE_CODE.sub("code", prose(path.read_text()))
    return [link for link in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", link)]


def test_the_readme_is_under_200_lines():
    """The README is the front door: under 200 lines, the rest in docs/."""
    lines = len(README.read_text().splitlines())
    assert lines < 200, f"README.md has {lines} lines: move a section to its page under docs/"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_relative_link_resolves(page):
    """Every relative link leads to a file or folder of the repository, and an anchor to a heading of it."""
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        resolved = (page.parent / target).resolve() if target else page
        if not resolved.exists() or not resolved.is_relative_to(ROOT):
            broken.append(f"{link}: no such file or folder in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{link}: {resolved.relative_to(ROOT)} has no heading with the anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_no_page_names_a_path_outside_the_repository(page):
    """A page stands alone: it names no path outside the repository."""
    text = page.read_text()
    named = [path for path in OUTSIDE if path in text]
    assert not named, f"{page.relative_to(ROOT)} names {named}: say what it is instead of where it lies"
