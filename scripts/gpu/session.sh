#!/usr/bin/env bash
# The GPU work of issue 8, batched for the device machine: run there from the repo root, carrying
# .whl and .released (made here by scripts/gpu/prepare.sh). Parts, in the order to run them:
#   check     nvidia-smi, bench.py selfcheck, then the whole test suite         -> check.log, selfcheck.md
#   sanitize  compute-sanitizer memcheck and racecheck over the GPU selfcheck   -> sanitize.log
#             (every op, forward and gradients, every dtype, 1x1, K > H, odd C, C > 1024)
#   bench     bench.py (the default sweep), then bench.py compare at C=256, 128x128 -> 256x256, K=5,
#             d=32 in fp32 and fp16                                             -> bench.log, results.tgz
#   released  the released SAPA and mmcv CARAFE kernels against ours, same run  -> released.log, released_kernels.*
# Usage: bash scripts/gpu/session.sh PART [PART ...]; files go to $OUT (default /tmp/upbench-gpu).
# Exit status: 0 when every part passed, else the last failing part's.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/upbench-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
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
  nvidia-smi 2>&1 | tee "$OUT/check.log"
  $PY bench.py selfcheck --out "$OUT/selfcheck.md" 2>&1 | tee -a "$OUT/check.log" || return 1
  $PY -m pytest -q -ra 2>&1 | tee -a "$OUT/check.log"
}

sanitize() {
  local status=0 tool
  : >"$OUT/sanitize.log"
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool" | tee -a "$OUT/sanitize.log"
    # Without the caching allocator every tensor is its own allocation, so memcheck sees an access
    # past a tensor's end even where the cache would have handed out the bytes after it.
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" --error-exitcode 1 --print-limit 50 \
      $PY bench.py selfcheck --devices cuda:0 >>"$OUT/sanitize.log" 2>&1 || status=1
    tail -n 3 "$OUT/sanitize.log"
  done
  return $status
}

bench() {
  local gpu
  $PY bench.py 2>&1 | tee "$OUT/bench.log" || return 1
  $PY bench.py compare --device cuda --C 256 --size 128 --K 5 --d 32 --dtype fp32,fp16 2>&1 | tee -a "$OUT/bench.log" \
    || return 1
  gpu=$($PY -c "from upbench.environment import device_slug; print(device_slug('cuda'))")
  tar -czf "$OUT/results.tgz" "results/$gpu"
}

released() {
  $PY scripts/gpu/released_kernels.py --sapa-src .released/sapa --mmcv-src .released --out "$OUT" 2>&1 \
    | tee "$OUT/released.log"
}

[ $# -gt 0 ] || { sed -n '2,10p' "$0"; exit 2; }
for part in "$@"; do
  case $part in
    check|sanitize|bench|released) ;;
    *) echo "session: unknown part '$part'; expected check, sanitize, bench or released" >&2; exit 2 ;;
  esac
done
setup || { echo "session: setup failed" >&2; exit 1; }
final=0
for part in "$@"; do
  start=$SECONDS
  "$part"; status=$?
  echo "session: $part: exit $status after $((SECONDS - start)) s" | tee -a "$OUT/session.log"
  [ $status -eq 0 ] || final=$status
done
exit $final
