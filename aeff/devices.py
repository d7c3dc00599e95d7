"""A trial's devices, set up before JAX starts: its own GPUs, memory on demand, the cache.

A launcher that runs several trials at once on one host (joblib) would otherwise
let every trial's JAX take every GPU. Each trial process claims a free slot of
`devices.per_trial` GPUs with a lock file held for the process's lifetime (the
launcher's workers are reused, and JAX reads CUDA_VISIBLE_DEVICES only once), then
sets CUDA_VISIBLE_DEVICES to that slot.
"""

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from aeff.errors import ConfigError

log = logging.getLogger(__name__)

_claimed: tuple[list[int], IO] | None = None  # this process's slot and its lock


def sharing(parallel: int, cpus: int, gpus: int, per_trial: int | None) -> str | None:
    """How trials run `parallel` at a time on one host share it, or None where each has
    its own: GPUs not split by `devices.per_trial`, or on a CPU more trials than cores.
    Each trial's clock then counts the others' work."""
    if parallel <= 1:
        return None
    if gpus:
        return None if per_trial else f"{parallel} trials at once share {gpus} GPU(s)"
    return f"{parallel} trials at once share {cpus} CPU cores" if parallel > cpus else None


def default_lock_dir() -> Path:
    """One folder per user and host, so every aeff process there shares the GPUs fairly."""
    return Path(tempfile.gettempdir()) / f"aeff-device-slots-{os.getuid()}"


def slots_of(per_trial: int, ids: list[int]) -> list[list[int]]:
    """The GPUs `ids` in slots of `per_trial`; none is refused (a sweep checks it before
    its first trial, so that not every trial fails alike)."""
    slots = [ids[i : i + per_trial] for i in range(0, len(ids) - per_trial + 1, per_trial)]
    if not slots:
        raise ConfigError(
            f"devices.per_trial={per_trial} but only {len(ids)} GPUs ({ids}) are available: "
            "lower devices.per_trial or list more in devices.ids."
        )
    return slots


def claim_devices(per_trial: int, ids: list[int], lock_dir: Path) -> list[int]:
    """Claim `per_trial` of the GPUs `ids` for this process; sets CUDA_VISIBLE_DEVICES."""
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    slots = slots_of(per_trial, ids)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in slots:
        lock = (lock_dir / f"gpus-{'-'.join(map(str, slot))}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, slot))
        _claimed = (slot, lock)
        return slot
    raise ConfigError(
        f"All {len(slots)} slots of {per_trial} GPUs are taken: run at most {len(slots)} "
        "trials at once (e.g. hydra.launcher.n_jobs)."
    )


def visible_gpu_ids() -> list[int]:
    """The GPUs this process may use, by NVML, narrowed by CUDA_VISIBLE_DEVICES."""
    from aeff.records import system

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [int(i) for i in visible.split(",") if i.strip().isdigit()]
    return list(range(len(system.gpu_handles())))


def set_up(settings: Any) -> None:
    """Before JAX starts, for a trial's `config.TrialConfig`: GPU memory on demand, the
    trial's own GPUs (`devices.per_trial`), the compilation cache."""
    # A trial takes the GPU memory it needs, not three quarters of the card (JAX's
    # default), so that several trials can share one; set before JAX starts.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    devices = settings.devices
    if devices.per_trial:
        ids = devices.ids if devices.ids is not None else visible_gpu_ids()
        slot = claim_devices(devices.per_trial, ids, default_lock_dir())
        log.info("devices.per_trial=%d: this trial uses GPUs %s", devices.per_trial, slot)
    if settings.compilation_cache_dir:
        enable_compilation_cache(Path(settings.compilation_cache_dir).expanduser())


def enable_compilation_cache(directory: Path) -> None:
    """Keep every compiled program on disk, however small, for the next process."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
