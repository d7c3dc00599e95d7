"""joblib's workers, stopped by the sweep that a signal stops (`aeff_launcher.workers`)."""

import os
import sys
import types

from hydra_plugins.aeff_launcher import workers


def test_joblibs_workers_are_taken_out_of_its_pools_hands(monkeypatch):
    """So that the pool's manager thread, seeing one worker end, does not SIGKILL the others
    while they save their checkpoints."""
    assert workers.detached_loky_workers() == []  # no pool in this process
    processes = {os.getpid(): "this process, as a worker", 2**22 + 1: "one that ended"}
    pool = types.SimpleNamespace(_executor=types.SimpleNamespace(_processes=processes))
    monkeypatch.setitem(sys.modules, "joblib.externals.loky.reusable_executor", pool)
    assert [w.pid for w in workers.detached_loky_workers()] == [os.getpid()]
    assert processes == {}
