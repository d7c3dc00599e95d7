"""AlgoPerf's submission contract on aeff: AlgoPerf's JAX submission files run as published.

`provide()` makes `from algoperf import spec, jax_sharding_utils` work in a submission file
where the `algoperf` package is not installed, with modules of aeff's own writing
(`aeff.algoperf.spec`, `aeff.algoperf.jax_sharding_utils`); where it is installed, the real
package is imported as usual. `submission.py` tells the two contracts apart and holds an
AlgoPerf submission's module and hyperparameters; `runner.py` trains it under aeff's loop.
"""

import importlib
import importlib.util
import sys
import types

MODULES = ("spec", "jax_sharding_utils")


def provide() -> None:
    """`algoperf.spec` and `algoperf.jax_sharding_utils` importable, aeff's where the real
    package is not installed (nothing changes where it is)."""
    if "algoperf" in sys.modules or importlib.util.find_spec("algoperf") is not None:
        return
    package = types.ModuleType("algoperf", "aeff's stand-in for AlgoPerf's API (aeff.algoperf)")
    package.__path__ = []  # a package: `import algoperf.spec` looks in sys.modules first
    for name in MODULES:
        module = importlib.import_module(f"aeff.algoperf.{name}")
        setattr(package, name, module)
        sys.modules[f"algoperf.{name}"] = module
    sys.modules["algoperf"] = package
