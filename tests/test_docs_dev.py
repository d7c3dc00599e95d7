"""The maintainers' docs (docs/dev/) cannot rot: the decisions' index and its files agree, every
relative link there leads to a file of the repository, and every test they name exists."""

import re

from helpers import REPO

DEV = REPO / "docs" / "dev"
DECISIONS = DEV / "decisions"
INDEX = DECISIONS / "README.md"
DECISION_FILE = re.compile(r"(\d{4})-[a-z0-9]+(?:-[a-z0-9]+)*\.md")
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
TEST_REFERENCE = re.compile(r"\btests/[\w/]+\.py(?:::\w+)*")


def relative_links(text: str) -> list[tuple[str, str]]:
    """(text, target) of each Markdown link that points into the repository, anchor cut."""
    found = []
    for label, target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same page
        found.append((label, target.split("#", 1)[0]))
    return found


def indexed_decisions() -> list[tuple[str, str]]:
    """(link text, file name) of each row of the index that links a decision."""
    return [
        (label, target)
        for label, target in relative_links(INDEX.read_text())
        if DECISION_FILE.fullmatch(target)
    ]


def test_every_decision_file_is_listed_in_the_index_and_every_entry_exists():
    files = {p.name for p in DECISIONS.glob("*.md") if p.name != "README.md"}
    listed = [target for _, target in indexed_decisions()]
    assert files, "no decision files"
    assert sorted(set(listed)) == sorted(listed), "a decision is listed twice"
    assert set(listed) - files == set(), "listed in the index but no such file"
    assert files - set(listed) == set(), "a decision file missing from the index"


def test_decision_files_are_named_and_numbered_once():
    names = [p.name for p in DECISIONS.glob("*.md") if p.name != "README.md"]
    badly_named = [name for name in names if not DECISION_FILE.fullmatch(name)]
    assert badly_named == [], "decision files are named NNNN-short-slug.md"
    numbers = [name[:4] for name in names]
    assert len(set(numbers)) == len(numbers), "two decisions share a number"
    for label, target in indexed_decisions():
        assert label == target[:4], f"the index row for {target} says {label}"


def test_every_decision_opens_with_a_title_that_names_its_topic():
    for path in DECISIONS.glob("[0-9]*.md"):
        first, _, body = path.read_text().partition("\n")
        assert first.startswith("# ") and len(first) > 4, f"{path.name}: no title heading"
        assert not re.fullmatch(r"# .*(issue|#)\s*\d+.*", first, re.I), (
            f"{path.name}: titled by an issue, not its topic"
        )
        assert body.strip(), f"{path.name}: a title and no decision"


def test_every_relative_link_in_the_maintainers_docs_resolves():
    pages = sorted(DEV.rglob("*.md"))
    assert INDEX in pages and DEV / "README.md" in pages
    broken = []
    for page in pages:
        for _, target in relative_links(page.read_text()):
            resolved = (page.parent / target).resolve()
            if not resolved.exists() or not resolved.is_relative_to(REPO):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []


def test_the_link_reader_finds_relative_links_and_skips_urls_and_anchors():
    text = "[a](x.md#top) [b](https://example.org) [c](#here) [d](../e/) [f](mailto:a@b)"
    assert relative_links(text) == [("a", "x.md"), ("d", "../e/")]


def test_the_mutation_scores_name_only_modules_that_exist():
    text = (DEV / "testing.md").read_text()
    section = text.split("### Scores of the modules that exist", 1)[1].split("\n#", 1)[0]
    modules = re.findall(r"^\| `([^`]+\.py)` \|", section, re.M)
    assert modules, "no score rows found under the scores heading"
    assert [m for m in modules if not (REPO / m).is_file()] == []


def named_tests(text: str) -> list[tuple[str, list[str]]]:
    """(file, [class ..., function]) of each `tests/....py` or `tests/....py::name` in the text."""
    found = []
    for reference in TEST_REFERENCE.findall(text):
        path, *names = reference.split("::")
        found.append((path, names))
    return found


def missing_test(path: str, names: list[str]) -> str | None:
    """Why `path::names` names nothing in the repository, or None: the file exists, each name
    but the last is a class in it and the last a function."""
    file = REPO / path
    if not file.is_file():
        return "no such file"
    source = file.read_text()
    for depth, name in enumerate(names):
        kind = "def" if depth == len(names) - 1 else "class"
        if not re.search(rf"^[ \t]*(?:async[ \t]+)?{kind}[ \t]+{name}\b", source, re.M):
            return f"no {kind} {name} in it"
    return None


def test_every_test_named_in_the_maintainers_docs_exists():
    named = {}
    for page in sorted(DEV.rglob("*.md")):
        for path, names in named_tests(page.read_text()):
            named.setdefault("::".join([path, *names]), (page, path, names))
    assert any("::" in reference for reference in named), "no test named by file::name"
    wrong = [
        f"{page.relative_to(REPO)}: {reference}: {why}"
        for reference, (page, path, names) in sorted(named.items())
        if (why := missing_test(path, names))
    ]
    assert wrong == []


def test_the_test_reader_finds_files_and_names_and_checks_each():
    text = "`tests/reliability/test_kill.py`, tests/test_loop.py::a_b and tests/test_<module>.py"
    assert named_tests(text) == [
        ("tests/reliability/test_kill.py", []),
        ("tests/test_loop.py", ["a_b"]),
    ]
    assert missing_test("tests/test_docs_dev.py", ["missing_test"]) is None
    assert missing_test("tests/test_docs_dev.py", ["missing"]) == "no def missing in it"
    assert missing_test("tests/test_docs_dev.py", ["DEV"]) == "no def DEV in it"
    assert missing_test("tests/nothing_here.py", []) == "no such file"
