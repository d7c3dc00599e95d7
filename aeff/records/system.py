"""The host's state at one moment: CPU, memory, disk, network, this process, NVIDIA GPUs.

Units: percentages 0-100, bytes, MHz, degrees Celsius, watts. Counters named
`*_since_boot` are the operating system's totals; subtract two rows for a rate.
"""

import functools
import os
from typing import Any

import psutil

try:  # nvidia-ml-py; absent or without a driver it reports no GPUs
    import pynvml
except ImportError:  # pragma: no cover - a declared dependency
    pynvml = None


_processes: dict[int, psutil.Process] = {}  # by pid: a forked child measures itself


def this_process() -> psutil.Process:
    """This process, the same object each time: its `cpu_percent` counts since the last call."""
    pid = os.getpid()
    if pid not in _processes:
        _processes[pid] = psutil.Process(pid)
    return _processes[pid]


def prime() -> None:
    """Start psutil's CPU intervals (the host's and this process's) so the first sample's
    utilisation means something."""
    psutil.cpu_percent(interval=None)
    this_process().cpu_percent(interval=None)


@functools.cache
def _nvml_ready() -> bool:
    if pynvml is None:
        return False
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    return True


def gpu_handles() -> list[Any]:
    if not _nvml_ready():
        return []
    return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]


def gpu_facts() -> dict[str, Any]:
    """Model, count and driver for metadata.json; empty or 0 without an NVIDIA GPU."""
    handles = gpu_handles()
    if not handles:
        return {"gpu_model_name": "", "gpu_count": 0, "gpu_driver": ""}
    return {
        "gpu_model_name": _text(pynvml.nvmlDeviceGetName(handles[0])),
        "gpu_count": len(handles),
        "gpu_driver": _text(pynvml.nvmlSystemGetDriverVersion()),
    }


def sample() -> dict[str, Any]:
    """One reading of every system column of metrics.csv."""
    row: dict[str, Any] = {"cpu.util.avg_percent_since_last": psutil.cpu_percent(interval=None)}
    frequency = psutil.cpu_freq()
    row["cpu.freq.current"] = frequency.current if frequency else None
    temperatures = getattr(psutil, "sensors_temperatures", dict)()
    for sensor, readings in sorted(temperatures.items()):
        if readings:
            row[f"temp.{sensor}.current"] = readings[0].current
    memory = psutil.virtual_memory()
    row.update(
        {
            "mem.total": memory.total,
            "mem.available": memory.available,
            "mem.used": memory.used,
            "mem.percent_used": memory.percent,
        }
    )
    disk = psutil.disk_io_counters()
    row["disk.read_bytes_since_boot"] = disk.read_bytes if disk else None
    row["disk.write_bytes_since_boot"] = disk.write_bytes if disk else None
    net = psutil.net_io_counters()
    row["net.bytes_sent_since_boot"] = net.bytes_sent if net else None
    row["net.bytes_recv_since_boot"] = net.bytes_recv if net else None
    row["proc.rss_bytes"] = this_process().memory_info().rss
    # Cores' worth of CPU this process used since the last sample: beside the host's
    # utilisation it tells the trial's own work from other processes' (`results.busy_host`).
    row["proc.cpu.cores_since_last"] = this_process().cpu_percent(interval=None) / 100
    row.update(_gpu_sample())
    return row


def device_memory() -> dict[str, Any]:
    """This process's memory on each JAX device: in use and peak, in bytes (GPUs and TPUs
    report it; CPUs report nothing, and give no columns)."""
    import jax  # started already by the trial that asks

    row: dict[str, Any] = {}
    for index, device in enumerate(jax.local_devices()):
        stats = device.memory_stats() or {}
        for key in ("bytes_in_use", "peak_bytes_in_use"):
            if key in stats:
                row[f"device.{index}.{key}"] = stats[key]
    return row


def _gpu_sample() -> dict[str, Any]:
    handles = gpu_handles()
    row: dict[str, Any] = {"gpu.count": len(handles)}
    per_gpu = []
    for index, handle in enumerate(handles):
        utilisation = pynvml.nvmlDeviceGetUtilizationRates(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        reading = {
            "compute.util": utilisation.gpu,  # percent of time a kernel ran
            "mem.util": utilisation.memory,  # percent of time memory was read or written
            "mem.total": memory.total,
            "mem.used": memory.used,
            "mem.free": memory.free,
            "temp.current": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            "power.watts": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
        }
        per_gpu.append(reading)
        row.update({f"gpu.{index}.{key}": value for key, value in reading.items()})
    if per_gpu:
        for key in per_gpu[0]:
            row[f"gpu.avg.{key}"] = sum(r[key] for r in per_gpu) / len(per_gpu)
    return row


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
