"""The user docs' bash blocks, as tests read and run them.

Each ```bash block of README.md and the guide's pages (those docs/README.md lists) is, by the
HTML comment on the line before it, one of:

- no comment: run by tests/test_doc_commands.py, with the other unmarked blocks of its page,
  in order, in one empty folder, with tiny budgets (`python_with_tiny_budgets`);
- `<!-- run by tests/test_X.py -->`: that test runs it;
- `<!-- run in docs/X.md -->`: each of its commands is a command of a block of that page, run
  there;
- `<!-- not run here: REASON -->`: REASON is one of `NOT_RUN_REASONS`.
"""

import os
import re
import stat
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO

MARKER = re.compile(r"<!-- (run by|run in|not run here:) (.+?) -->")
BLOCK = re.compile(
    r"^(<!-- [^\n]*? -->\n)?([ \t]*)```bash\n(.*?)^[ \t]*```", flags=re.DOTALL | re.MULTILINE
)

# Why a block may go unrun here, and the file whose existence backs the reason (or None).
NOT_RUN_REASONS = {
    "installs packages; .ci/run runs them in a fresh clone": ".ci/run",
    "needs a SLURM cluster; tests/test_slurm.py runs it": "tests/test_slurm.py",
    "needs root to start a SLURM cluster; .ci/run starts it for tests/test_slurm.py": (
        "scripts/slurm_cluster.sh"
    ),
    "needs the tfds extra; tests/test_data.py reads tfds-prepared MNIST": "tests/test_data.py",
    "needs GPUs": None,
    "a measurement (minutes of training); its result is the table below": None,
    "installs packages and opens a web UI": None,
}


@dataclass(frozen=True)
class Block:
    page: Path
    kind: str  # "run", "run by", "run in" or "not run here:"
    target: str  # the test, the page or the reason; "" for "run"
    text: str
    section: str  # the heading above the block

    def commands(self) -> list[str]:
        """Its commands, continuation lines joined, comments and spacing ignored."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        lines = (re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines())
        return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def user_pages() -> list[Path]:
    """README.md, the guide's index (docs/README.md) and every page the index links to."""
    index = REPO / "docs" / "README.md"
    linked = re.findall(r"\]\(([\w-]+\.md)\)", index.read_text())
    return [REPO / "README.md", index, *(index.parent / name for name in dict.fromkeys(linked))]


def blocks(page: Path) -> list[Block]:
    source = page.read_text()
    found = []
    for match in BLOCK.finditer(source):
        headings = re.findall(r"^#+ (.*)$", source[: match.start()], flags=re.MULTILINE)
        marker = MARKER.fullmatch(match.group(1).strip()) if match.group(1) else None
        kind, target = (marker.group(1), marker.group(2)) if marker else ("run", "")
        if match.group(1) and not marker:
            kind, target = "unknown", match.group(1).strip()
        text = textwrap.dedent(match.group(3)) if match.group(2) else match.group(3)
        found.append(Block(page, kind, target, text, headings[-1] if headings else ""))
    return found


def page_files(page: Path) -> dict[str, str]:
    """The files a page asks you to save: each block under a `<!-- file: NAME -->` line."""
    pattern = r"<!-- file: (\S+) -->\n```\w*\n(.*?)^```"
    return dict(re.findall(pattern, page.read_text(), flags=re.DOTALL | re.MULTILINE))


# `python -m aeff ARGS` as the doc tests run it: the doc's own arguments, with a step cap
# (a doc's own is dropped), no packages.txt (listing every package takes about 2 s a trial;
# tests/test_records.py tests it), and sample counts, studies and workers cut to a few where
# the doc gives them. Everything else is the doc's text.
ALWAYS = {"max_steps": "8", "logging.packages": "false"}
WHERE_GIVEN = {"search.num_trials": "2", "search.num_studies": "2", "hydra.launcher.n_jobs": "2"}
HYDRA_OPTIONS_WITH_VALUE = {"--cfg", "-c", "-p", "--package", "--config-dir", "-cd"}

WRAPPER = """#!/usr/bin/env bash
# `python` for the doc tests: `python -m aeff ...` with tiny budgets (tests/helpers/docs.py).
if [ "${1-}" != -m ] || [ "${2-}" != aeff ]; then exec %(python)s "$@"; fi
shift 2
options=() overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    %(valued)s) options+=("$1" "$2"); shift 2; continue ;;
    -*) options+=("$1") ;;
    %(dropped)s) ;;
%(replaced)s
    *) overrides+=("$1") ;;
  esac
  shift
done
case " ${overrides[*]-} " in
  *" hydra/sweeper=optuna "*) overrides+=(hydra.sweeper.n_trials=2) ;;
esac
exec %(python)s -m aeff "${options[@]}" "${overrides[@]}" %(always)s
"""


def python_with_tiny_budgets(folder: Path, **always: str) -> Path:
    """A folder holding a `python` that runs `python -m aeff` with `ALWAYS` (updated by
    `always`: `max_steps="400"`) and `WHERE_GIVEN`, and anything else as this interpreter;
    put it first on the PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    caps = {**ALWAYS, **always}
    replaced = "\n".join(
        f'    {key}=*) overrides+=("{key}={value}") ;;' for key, value in WHERE_GIVEN.items()
    )
    script = folder / "python"
    script.write_text(
        WRAPPER
        % {
            "python": sys.executable,
            "valued": "|".join(sorted(HYDRA_OPTIONS_WITH_VALUE)),
            "dropped": "|".join(f"{key}=*" for key in caps),
            "replaced": replaced,
            "always": " ".join(f"{key}={value}" for key, value in caps.items()),
        }
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def path_with(folder: Path) -> str:
    return os.pathsep.join([str(folder), os.environ["PATH"]])
