"""The user docs hold together: every relative link points at a file (and a heading there),
and every bash block is run by a test or says why not (the markers of tests/helpers/docs.py)."""

import re
from pathlib import Path

import pytest
from helpers import REPO
from helpers.docs import NOT_RUN_REASONS, Block, blocks, user_pages

LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(page: Path) -> list[str]:
    """The page's relative links whose file, or heading (`#anchor`), does not exist."""
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        where = page.parent / path if path else page
        if not where.exists():
            broken.append(target)
        elif anchor and where.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", where.read_text(), flags=re.MULTILINE)
            if anchor not in {slug(heading) for heading in headings}:
                broken.append(target)
    return broken


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    assert broken_links(page) == []


def test_a_link_to_a_missing_file_or_heading_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n## Its part\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n[a](gone.md) [b](#top) [c](other.md#nope) [d](other.md#its-part) "
        "[e](https://example.org/gone.md) [f](other.md)\n"
    )
    assert broken_links(page) == ["gone.md", "other.md#nope"]


def problem(block: Block) -> str | None:
    """What is wrong with a block's marker, or None (tests/helpers/docs.py's grammar)."""
    page = block.page.name
    if block.kind == "run":
        return None  # tests/test_doc_commands.py runs it
    if block.kind == "run by":
        test = REPO / block.target
        if not test.is_file():
            return f"{page}: 'run by {block.target}': no such test file"
        source = test.read_text()
        if block.page.name not in source or block.section not in source:
            return (
                f"{page}: {block.target} names neither {block.page.name} nor the section "
                f"{block.section!r}: it does not run this block"
            )
        return None
    if block.kind == "run in":
        elsewhere = [b for b in blocks(REPO / block.target) if b.kind in ("run", "run by")]
        run = {command for b in elsewhere for command in b.commands()}
        missing = [command for command in block.commands() if command not in run]
        return f"{page}: not run in {block.target}: {missing}" if missing else None
    if block.kind == "not run here:":
        if block.target not in NOT_RUN_REASONS:
            return f"{page}: not run here for a reason no test accepts: {block.target!r}"
        backing = NOT_RUN_REASONS[block.target]
        if backing and not (REPO / backing).exists():
            return f"{page}: {block.target!r}, but there is no {backing}"
        return None
    return f"{page}: a bash block under an unknown comment: {block.target}"


def all_blocks() -> list[Block]:
    return [block for page in user_pages() for block in blocks(page)]


def test_every_bash_block_of_the_user_docs_is_run_by_a_test_or_says_why_not():
    assert [problem(block) for block in all_blocks() if problem(block)] == []


def test_the_readmes_install_commands_are_the_ones_ci_runs():
    [block] = [
        b
        for b in blocks(REPO / "README.md")
        if b.target.endswith(".ci/run runs them in a fresh clone")
    ]
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev]"' in ci and 'pip install -e ".[dev]"' in block.text
    assert "venv" in ci and re.search(r"^pytest\b", ci, flags=re.MULTILINE)
    assert re.search(r"^pytest\b", block.text, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("marker", "wrong"),
    [
        ("", None),
        ("<!-- run by tests/test_nope.py -->\n", "no such test file"),
        ("<!-- run by tests/test_rules.py -->\n", "does not run this block"),
        ("<!-- run in docs/sweeps.md -->\n", "not run in docs/sweeps.md"),
        ("<!-- not run here: too slow -->\n", "a reason no test accepts"),
        ("<!-- runs somewhere -->\n", "unknown comment"),
    ],
)
def test_a_block_no_test_runs_is_found(tmp_path, marker, wrong):
    page = tmp_path / "probe.md"
    page.write_text(f"# Probe\n\n{marker}```bash\npython -m aeff hparams.lr=0.123\n```\n")
    [block] = blocks(page)
    found = problem(block)
    assert found is None if wrong is None else wrong in found
