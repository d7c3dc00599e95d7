"""The layout's rules: no import cycle among aeff's modules, the layers importing one way
(records and training never import results or the Hydra plugins; only the entry point imports
the CLI), one owner per run-dir file."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("aeff", "hydra_plugins")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(name for name in names if name in known)
    return found


def test_no_import_cycles():
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    graph = {module_name(p): imports(p, known) - {module_name(p)} for p in files}
    for package in [m for m in known if f"{m}.__init__" not in known]:
        graph[package] = graph.get(package, set())  # a package imports nothing by itself here

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for target in graph.get(node, ()):
            if target == start:
                return (*seen, target)
            if target not in seen:
                found = cycle_from(start, target, (*seen, target))
                if found:
                    return found
        return None

    for module in sorted(graph):
        assert cycle_from(module, module, (module,)) is None, " -> ".join(
            cycle_from(module, module, (module,))
        )


def test_the_run_dir_files_are_named_in_one_module():
    """metadata.json, metrics.csv, ... appear as string literals only in run_dir.py; the
    lock file's name only in lock.py, beside its one owner (`Lock`)."""
    owners = {
        "run_dir.py": ("metadata.json", "metrics.csv", "config_resolved.yaml", "packages.txt"),
        "lock.py": (".aeff.lock",),
    }
    for path in (REPO / "aeff").rglob("*.py"):
        names = [n for owner, own in owners.items() if owner != path.name for n in own]
        literals = re.findall(r"[\"']([^\"'\n]+)[\"']", path.read_text())
        assert not [s for s in literals if s in names], path


def test_every_package_is_installed():
    """A package missing from pyproject's list works in an editable install only."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        module_name(init)
        for package in PACKAGES
        for init in (REPO / package).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk - listed == set(), "add them to [tool.setuptools] packages in pyproject.toml"


def test_no_test_module_imports_another():
    """Shared code lives in tests/helpers; a test module or conftest imported elsewhere
    would run its tests or fixtures twice."""
    for path in (REPO / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in getattr(node, "names", [])]
                tests = [n for n in names if n.split(".")[-1].startswith(("test_", "conftest"))]
                assert not tests, f"{path.relative_to(REPO)} imports {tests}"


# Layering: what each part may import ----------------------------------------------------

# The reading side and what drives sweeps (their reports) are apart from the training path.
NOT_TRAINING_PATH = ("aeff/results/", "aeff/sweeps/", "aeff/cli/")


def reading_side_or_plugins(name: str) -> bool:
    return name == "aeff.results" or name.startswith(("aeff.results.", "hydra_plugins."))


def the_cli(name: str) -> bool:
    return name == "aeff.cli" or name.startswith("aeff.cli.")


def plugins(name: str) -> bool:
    return name == "hydra_plugins" or name.startswith("hydra_plugins.")


# rule: (the files it binds, the imports it forbids them)
LAYERS = {
    # records, the trial and the training path never import results (pandas) or the plugins
    "training_path": (
        lambda path: path.startswith("aeff/") and not path.startswith(NOT_TRAINING_PATH),
        reading_side_or_plugins,
    ),
    # nothing imports the CLI but the entry point
    "cli": (
        lambda path: not path.startswith("aeff/cli/") and path != "aeff/__main__.py",
        the_cli,
    ),
    # aeff imports the Hydra plugins only in its CLI
    "plugins": (
        lambda path: path.startswith("aeff/") and not path.startswith("aeff/cli/"),
        plugins,
    ),
}


def imported_modules(path: Path, project: set[str]) -> set[str]:
    """Every module `path` imports (the project's and any other), at the top or inside
    functions; `from package import module` names the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            found.update(named & project)
    return found


def breaks_of(rule: str) -> set[tuple[str, str]]:
    binds, forbids = LAYERS[rule]
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    project = {module_name(p) for p in files}
    found = set()
    for path in files:
        name = path.relative_to(REPO).as_posix()
        if binds(name):
            imported = imported_modules(path, project)
            found.update((name, module) for module in imported if forbids(module))
    return found


@pytest.mark.parametrize("rule", list(LAYERS))
def test_each_layer_imports_only_what_its_rule_allows(rule):
    assert breaks_of(rule) == set(), rule
