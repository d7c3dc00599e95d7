#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in under 8 minutes: a default trial (twice, the
# second with a warm compilation cache, timed), two trials sharing the GPU, the
# multi-device check, the NVML columns check, the throughput benchmark and the
# vectorized sweep benchmark (64 trials in one program), then a summary. Usage, from the repository root after `pip install -e ".[dev]"` (with a
# CUDA build of jaxlib):   bash benchmarks/gpu_check.sh [OVERRIDE ...]
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
declare -A result

run() {  # name, command...
  local name=$1; shift
  echo "== $name"
  if timeout 300 "$@" >"$out/$name.log" 2>&1; then result[$name]=ok; else result[$name]="FAILED ($?)"; fi
  tail -n 4 "$out/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python -c "import jax; print('jax devices:', jax.devices())"

run cold_trial python -m aeff rng_seed=0 hydra.run.dir="$out/cold" "$@"
now() { python -c 'import time; print(time.time())'; }
start=$(now)
run default_trial python -m aeff rng_seed=0 hydra.run.dir="$out/default" "$@"
process_wall=$(python -c "print($(now) - $start)")
run shared_gpu python -m aeff -m rng_seed=0,1 hydra/launcher=parallel hydra.launcher.n_jobs=2 \
  hydra.sweep.dir="$out/shared" "$@"
# fake CPU devices; -o addopts=: in one process, whether or not pytest-xdist is installed
run multi_device env JAX_PLATFORMS=cpu python -m pytest -q -o addopts= tests/test_trial.py -k across
run nvml_columns python - "$out/default" <<'PY'
import csv, sys
row = next(csv.DictReader(open(f"{sys.argv[1]}/metrics.csv")))
count = int(row["gpu.count"])
assert count > 0, "NVML saw no GPU"
needed = [f"gpu.{i}.{k}" for i in range(count) for k in (
    "compute.util", "mem.util", "mem.total", "mem.used", "mem.free", "temp.current",
    "power.watts")]
needed += ["device.0.bytes_in_use", "device.0.peak_bytes_in_use"]  # this process's own
missing = [c for c in needed if row.get(c) in (None, "")]
assert not missing, f"missing: {missing}"
print({c: row[c] for c in [*needed[:7], *needed[-2:]]})
PY
run throughput python benchmarks/throughput.py "$@"
run sweep_vectorized python benchmarks/sweep_vectorized.py 64 "$@"

echo "== summary"
grep -h "goal reached" "$out/default_trial.log" | tail -n 1
python - "$out" "$process_wall" <<'PY'
import csv, json, sys
out, wall = sys.argv[1], float(sys.argv[2])
meta = json.load(open(f"{out}/default/metadata.json"))
rows = list(csv.DictReader(open(f"{out}/default/metrics.csv")))
print(f"default trial: {len(rows)} rows, time to target {meta['time_to_target']} s, "
      f"resolution {meta['time_to_target_resolution']}, submission "
      f"{meta['accumulated_submission_time']:.2f} s, loop wall {meta['wall_time']:.2f} s, "
      f"process wall {wall:.2f} s: {wall - meta['wall_time']:.2f} s beyond the loop")
for job in (0, 1):
    shared = json.load(open(f"{out}/shared/{job}/metadata.json"))
    last = list(csv.DictReader(open(f"{out}/shared/{job}/metrics.csv")))[-1]
    peak = last.get("device.0.peak_bytes_in_use") or "nan"  # none on a CPU
    print(f"shared GPU, trial {job}: {shared['status']}, peak device memory "
          f"{float(peak) / 2**20:.0f} MiB")
PY
grep -h "aeff / limit" "$out/throughput.log"
grep -h "K=64" "$out/sweep_vectorized.log"
for name in cold_trial default_trial shared_gpu multi_device nvml_columns throughput \
    sweep_vectorized; do
  echo "$name: ${result[$name]}"
done
