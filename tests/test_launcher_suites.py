"""The vectorized launcher as a Hydra launcher: Hydra's own launcher test suites, as
Hydra's launcher plugins run them. Their jobs are not aeff trials, so they run one by one
as the basic launcher runs them."""

from pathlib import Path

import pytest
from hydra import version
from hydra.core.plugins import Plugins
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from hydra_plugins.aeff_launcher.vectorized_launcher import VectorizedLauncher


@pytest.fixture(autouse=True)
def vectorized_launcher_known(monkeypatch):
    """Hydra's plugin scan cannot list the modules of an editable install (an import hook):
    registered here, and found by the suites' child processes on a path entry, as in a
    regular install. The suites expect Hydra 1.1's defaults (each job in its own working
    dir), which importing aeff's app (version_base 1.3) replaced."""
    Plugins.instance().register(VectorizedLauncher)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    base = version.getbase()
    version.setbase("1.1")
    yield
    version.VersionBase.instance().setbase(base)


@pytest.mark.slow  # Hydra's sweeps, in-process: 3 s
@pytest.mark.parametrize("launcher_name, overrides", [("vectorized", [])])
class TestVectorizedLauncher(LauncherTestSuite):
    pass


@pytest.mark.slow  # a process a test
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/launcher=vectorized"])],
)
class TestVectorizedLauncherIntegration(IntegrationTestSuite):
    pass
