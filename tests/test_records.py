"""The pieces of the records: flattening, system metrics (fake NVML), packages, concat.

The crash-safe writes (`aeff/records/files.py`) are tested in test_files.py."""

import csv
import importlib.metadata
import json
import subprocess
import time
import types

import pytest
from omegaconf import OmegaConf

from aeff.records import concatenate_csvs, environment, packages, system
from aeff.records.flatten import flatten


def test_flatten_nested_mappings_lists_and_omegaconf():
    nested = OmegaConf.create({"a": {"b": [1, {"c": 2}]}, "d": "x"})
    assert flatten(nested, "cfg") == {"cfg.a.b.0": 1, "cfg.a.b.1.c": 2, "cfg.d": "x"}
    assert flatten({"lr": 0.1}) == {"lr": 0.1}


class FakeNvml(types.SimpleNamespace):
    """Two GPUs with fixed readings, in pynvml's API."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self):
        super().__init__(inits=0)

    def nvmlInit(self):
        self.inits += 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H100"

    def nvmlSystemGetDriverVersion(self):
        return "580.1"

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=10 * (h + 1), memory=5 * (h + 1))

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=80e9, used=(h + 1) * 1e9, free=80e9 - (h + 1) * 1e9)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 40 + h

    def nvmlDeviceGetPowerUsage(self, h):
        return 100_000 * (h + 1)  # milliwatts


@pytest.fixture
def fake_nvml(monkeypatch):
    nvml = FakeNvml()
    monkeypatch.setattr(system, "pynvml", nvml)
    system._nvml_ready.cache_clear()
    yield nvml
    system._nvml_ready.cache_clear()


def test_gpu_columns_from_nvml_with_two_devices(fake_nvml):
    row = system.sample()
    assert row["gpu.count"] == 2
    assert row["gpu.0.compute.util"] == 10 and row["gpu.1.compute.util"] == 20
    assert row["gpu.1.mem.used"] == 2e9 and row["gpu.0.mem.free"] == 79e9
    assert row["gpu.0.temp.current"] == 40
    assert row["gpu.1.power.watts"] == 200.0
    assert row["gpu.avg.compute.util"] == 15 and row["gpu.avg.power.watts"] == 150.0
    assert system.gpu_facts() == {
        "gpu_model_name": "NVIDIA H100",
        "gpu_count": 2,
        "gpu_driver": "580.1",
    }
    assert fake_nvml.inits == 1  # NVML is initialised once per process


def test_no_nvidia_gpu_gives_zero_gpus(monkeypatch):
    class NoDriver(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("no driver")

    monkeypatch.setattr(system, "pynvml", NoDriver())
    system._nvml_ready.cache_clear()
    try:
        assert system.sample()["gpu.count"] == 0
        assert system.gpu_facts()["gpu_count"] == 0
    finally:
        system._nvml_ready.cache_clear()


def test_host_columns_are_plausible():
    system.prime()
    row = system.sample()
    assert row["mem.total"] > row["mem.available"] > 0
    assert 0 <= row["mem.percent_used"] <= 100
    assert 0 <= row["cpu.util.avg_percent_since_last"] <= 100
    assert row["proc.rss_bytes"] > 10e6
    assert row["disk.read_bytes_since_boot"] >= 0 and row["net.bytes_recv_since_boot"] >= 0


def test_algoperf_git_keys_are_the_working_directory_state(tmp_path, tmp_path_factory):
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
        return done.stdout.decode().strip()

    git("init", "-q", "-b", "study")
    (tmp_path / "notes.txt").write_text("a study\n")
    git("add", "notes.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start")
    facts = environment.facts(tmp_path, record_hostname=False)
    assert facts["git_branch"] == facts["cwd_git_branch"] == "study"
    assert facts["git_commit_hash"] == facts["cwd_git_commit_hash"] == git("rev-parse", "HEAD")
    assert facts["aeff_git_commit_hash"] != facts["git_commit_hash"]  # aeff's own, kept apart

    outside = environment.facts(tmp_path_factory.mktemp("no_git"), record_hostname=False)
    assert outside["git_branch"] is None and outside["git_commit_hash"] is None


def test_credentials_are_redacted_from_vcs_installs(monkeypatch):
    url = "git+https://user:ghp_SECRET@github.com/org/repo.git"
    texts = {
        "METADATA": "Metadata-Version: 2.1\nName: private-lib\nVersion: 1.0\n\nA description.\n",
        "direct_url.json": json.dumps({"url": url, "vcs_info": {"commit_id": "abc123"}}),
    }
    dist = types.SimpleNamespace(read_text=texts.get)
    monkeypatch.setattr(packages.importlib.metadata, "distributions", lambda: [dist])
    assert packages.python_packages() == [
        "private-lib @ git+https://***@github.com/org/repo.git@abc123"
    ]
    text = packages.packages_text(include_os=False)
    assert "SECRET" not in text and "(not recorded" in text


def test_installed_packages_are_listed_sorted():
    listed = packages.python_packages()
    assert any(line.startswith("jax==") for line in listed)
    assert listed == sorted(listed, key=str.lower)
    # the header-only parse agrees with importlib's full one
    registry = [
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if not d.read_text("direct_url.json")
    ]
    assert registry and set(registry) <= set(listed)


def test_concat_unions_columns_and_skips_half_written_lines(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    (tmp_path / "0" / "metrics.csv").write_text("global_step,a\n1,0.5\n2,0.4\n")
    (tmp_path / "1" / "metrics.csv").write_text("global_step,b\n1,7\n2,8\n3,")  # still writing
    out = concatenate_csvs(tmp_path)
    rows = list(csv.DictReader(out.open()))
    assert [(r["run_dir"][-1], r["global_step"], r["a"], r["b"]) for r in rows] == [
        ("0", "1", "0.5", ""),
        ("0", "2", "0.4", ""),
        ("1", "1", "", "7"),
        ("1", "2", "", "8"),
    ]
    assert concatenate_csvs(tmp_path) == out  # does not pick up its own output
    assert len(list(csv.DictReader(out.open()))) == 4


def test_device_memory_columns_where_the_device_reports_it(monkeypatch):
    import jax

    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    gpus = [Device({"bytes_in_use": 5, "peak_bytes_in_use": 9, "bytes_limit": 100}), Device(None)]
    monkeypatch.setattr(jax, "local_devices", lambda: gpus)
    assert system.device_memory() == {"device.0.bytes_in_use": 5, "device.0.peak_bytes_in_use": 9}


def test_the_rerun_command_keeps_the_trials_own_settings_and_seed():
    overrides = [
        "+meta.note=a b",
        "hydra.run.dir=/x",
        "rng_seed=1",
        "hparams.lr=0.002596866783593736",
    ]
    overrides += ["search_space=mnist_adam", "search.num_trials=8", "hydra/launcher=vectorized"]
    assert environment.rerun_command(overrides, 5) == (
        "python -m aeff '+meta.note=a b' hparams.lr=0.002596866783593736 rng_seed=5"
    )


def test_the_rerun_command_leaves_out_what_aeff_adds_and_keeps_the_config_options():
    """`submission_path=F` gets `submission=from_file` added by aeff, which the re-run would
    refuse beside the path; `--config-dir` composes the user's own config options."""
    overrides = ["submission_path='/a b/c.py'", "submission=from_file", "workload=from_file"]
    overrides += ["workload_path=w.py", "hparams.lr=0.1"]
    command = environment.rerun_command(overrides, 3, ["--config-dir", "/my conf"])
    assert command == (
        "python -m aeff --config-dir '/my conf' 'submission_path='\"'\"'/a b/c.py'\"'\"'' "
        "workload_path=w.py hparams.lr=0.1 rng_seed=3"
    )


def test_a_sample_holds_the_cores_this_process_used_since_the_last_one():
    """Beside the host's utilisation, so that a reader tells the trial's work from others'."""
    system.prime()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # a third of a second of this process's CPU
        pass
    assert system.sample()["proc.cpu.cores_since_last"] > 0
