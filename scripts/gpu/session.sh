#!/usr/bin/env bash
# The GPU work of issue 8, batched for the device machine: run there from the repo root, carrying
# .whl and .released (made here by scripts/gpu/prepare.sh). Parts, in the order to run them:
#   check      nvidia-smi, bench.py selfcheck, then the CUDA tests of the kernels   -> selfcheck.md
#   suite      the whole test suite
#   memcheck   compute-sanitizer memcheck over the GPU selfcheck of the window ops  -> sanitize.log
#   racecheck  compute-sanitizer racecheck, likewise                                -> sanitize.log
#   bench      bench.py (the default sweep), then bench.py compare at C=256, 128x128 -> 256x256, K=5,
#              d=32 in fp32 and fp16                                                -> results.tgz
#   released   the released SAPA, mmcv CARAFE (and, prepared, FeatUp AdaptiveConv and the ReSFU module)
#              kernels against ours, same run                                        -> released_kernels.*
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
# Inside the checkout (ignored by git): a later call on the same warm machine reuses the build.
export UPBENCH_BUILD_DIR=$PWD/.torch_extensions/upbench PYTHONUNBUFFERED=1

setup() {
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || return 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
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
  $PY -m pytest -q -ra
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

[ $# -gt 0 ] || { sed -n '2,14p' "$0"; exit 2; }
for part in "$@"; do
  case $part in
    check|suite|memcheck|racecheck|bench|released) ;;
    *) echo "session: unknown part '$part'; expected check, suite, memcheck, racecheck, bench or released" >&2
       exit 2 ;;
  esac
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
