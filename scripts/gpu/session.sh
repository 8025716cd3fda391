#!/usr/bin/env bash
# The GPU work of issue 8, batched for the device machine: run there from the repo root, carrying
# .whl and .released (made here by scripts/gpu/prepare.sh). Parts, in the order to run them:
#   check      nvidia-smi, bench.py selfcheck, then the CUDA tests of the kernels   -> selfcheck.md
#   memcheck   compute-sanitizer memcheck over the GPU selfcheck of the window ops  -> sanitize.log
#   racecheck  compute-sanitizer racecheck, likewise                                -> sanitize.log
#   bench      bench.py (the default sweep), then bench.py compare at C=256, 128x128 -> 256x256, K=5,
#              d=32 in fp32 and fp16                                                -> results.tgz
#   released   the released SAPA, mmcv CARAFE (and, prepared, FeatUp AdaptiveConv and the ReSFU module)
#              kernels against ours, same run                                        -> released_kernels.*
#   profile    Nsight Compute over one forward + backward of each compiled op at that shape, fp32
#              and fp16 (scripts/gpu/profile_kernels.py)                             -> ncu.txt
#   suite      the whole test suite; last, as its processes leave a load the sweep flags for a minute
# Usage: bash scripts/gpu/session.sh PART [PART ...]; every part's output also goes to $OUT/session.log
# (OUT defaults to /tmp/upbench-gpu). Exit status: 0 when every part passed, else the last failure's.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/upbench-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
LOG=$OUT/session.log
# The window ops (norm_linear runs ATen's kernels on CUDA) and the dtypes whose index math differs
# (float32 data, and float16 data with float32 weights in the sapa backward).
SANITIZE_OPS=${SANITIZE_OPS:-local_similarity,dynamic_assembly,sapa_fused,reflect_similarity,reflect_assembly}
SANITIZE_DTYPES=${SANITIZE_DTYPES:-float32,float16}
PROFILE_DTYPES=${PROFILE_DTYPES:-float32,float16}
# Inside the checkout (ignored by git): a later call on the same warm machine reuses the build.
export UPBENCH_BUILD_DIR=$PWD/.torch_extensions/upbench PYTHONUNBUFFERED=1

setup() {
  # Into the interpreter's own environment, not a --target folder on PYTHONPATH: some tests start
  # subprocesses with a PYTHONPATH of their own, and the device runs commands as root.
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl || return 1
  fi
  # Installed (editable, no dependencies fetched) so the built-in operators' entry point exists.
  $PY -m pip install -q --no-deps --no-build-isolation -e . || return 1
}

check() {
  local status=0
  nvidia-smi
  $PY bench.py selfcheck --out "$OUT/selfcheck.md" || status=1
  # Even when the selfcheck failed: the tests say more about what.
  $PY -m pytest -q -ra -k "cuda" tests/test_kernels.py tests/test_fuzz_kernels.py tests/test_selfcheck.py || status=1
  return $status
}

suite() {
  # One process takes longer than a device call may run (about 1600 tests); with pytest-xdist (in the
  # device image) 12 processes ran the whole suite on an H100 machine's 16 cores in 4-5 minutes.
  local parallel=()
  $PY -c "import xdist" 2>/dev/null && parallel=(-n 12)
  $PY -m pytest -q -ra -p no:cacheprovider ${parallel[@]+"${parallel[@]}"}
}

sanitizer() {
  # Without the caching allocator every tensor is its own allocation, so memcheck sees an access past a
  # tensor's end even where the cache would have handed out the bytes after it.
  echo "== compute-sanitizer --tool $1" >>"$OUT/sanitize.log"
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$1" --error-exitcode 1 --print-limit 50 \
    $PY bench.py selfcheck --devices cuda:0 --ops "$SANITIZE_OPS" --dtypes "$SANITIZE_DTYPES" >>"$OUT/sanitize.log" 2>&1
  local status=$?
  tail -n 4 "$OUT/sanitize.log"
  return $status
}

memcheck() { sanitizer memcheck; }
racecheck() { sanitizer racecheck; }

bench() {
  local gpu
  $PY bench.py || return 1
  $PY bench.py compare --device cuda --C 256 --size 128 --K 5 --d 32 --dtype fp32,fp16 --isolate || return 1
  gpu=$($PY -c "from upbench.environment import device_slug; print(device_slug('cuda'))")
  tar -czf "$OUT/results.tgz" "results/$gpu"
}

released() {
  local optional=()
  [ -d .released/featup ] && optional+=(--featup-src .released)
  [ -d .released/resfu ] && optional+=(--resfu-src .released/resfu)
  $PY scripts/gpu/released_kernels.py --sapa-src .released/sapa --mmcv-src .released ${optional[@]+"${optional[@]}"} \
    --out "$OUT"
}

profile() {
  # Speed of light, memory and compute workload, occupancy, launch and warp-state sections: enough to
  # tell a kernel bound by DRAM from one bound by index math, L1 traffic or too few warps.
  ncu --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \
    $PY scripts/gpu/profile_kernels.py --dtypes "$PROFILE_DTYPES" >"$OUT/ncu.txt" 2>&1
  local status=$?
  grep -E "^  [a-z_]+_kernel|Duration|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy" \
    "$OUT/ncu.txt" | head -80
  return $status
}

PARTS="check memcheck racecheck bench released profile suite"  # as the header lists them
[ $# -gt 0 ] || { sed -n '2,/^set -uo/{/^#/p}' "$0"; exit 2; }  # the header, however long it grows
for part in "$@"; do
  known=no
  for name in $PARTS; do [ "$part" = "$name" ] && known=yes; done
  [ $known = yes ] || { echo "session: unknown part '$part'; expected one of: $PARTS" >&2; exit 2; }
done
setup >>"$LOG" 2>&1 || { echo "session: setup failed (see $LOG)" >&2; exit 1; }
final=0
for part in "$@"; do
  start=$SECONDS
  echo "== session: $part" | tee -a "$LOG"
  "$part" 2>&1 | tee -a "$LOG"
  status=${PIPESTATUS[0]}
  echo "session: $part: exit $status after $((SECONDS - start)) s" | tee -a "$LOG"
  [ "$status" -eq 0 ] || final=$status
done
exit $final
