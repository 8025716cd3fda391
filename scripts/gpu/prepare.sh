#!/usr/bin/env bash
# Run here, before a GPU session: put what the device machine lacks into two git-ignored folders that
# a device call carries (run's `carry`: [".whl", ".released"]).
#   .whl/       fvcore, iopath, yacs, termcolor, expecttest, submitit: wheels for the device's Python 3.12
#               (everything else upbench and its tests need is in the device image)
#   .released/  the released SAPA sources (poppinace/sapa's sapa/ folder), mmcv's CARAFE sources, given a
#               third directory FeatUp's AdaptiveConv sources and, given a fourth, ReSFU's module and FNS
#               attention sources (in .released/resfu), for scripts/gpu/released_kernels.py to build there;
#               for comparison only, never committed
# Usage: bash scripts/gpu/prepare.sh SAPA_GIT_DIR MMCV_GIT_DIR [FEATUP_GIT_DIR|"" [RESFU_GIT_DIR]]   (bare or
#        working git directories, e.g. what the workplace's fetch tool returns for poppinace/sapa,
#        open-mmlab/mmcv, mhamilton723/FeatUp and zmhhmz/ReSFU)
set -euo pipefail
cd "$(dirname "$0")/../.."
sapa_git=${1:?usage: prepare.sh SAPA_GIT_DIR MMCV_GIT_DIR}
mmcv_git=${2:?usage: prepare.sh SAPA_GIT_DIR MMCV_GIT_DIR}
featup_git=${3:-}
resfu_git=${4:-}

rm -rf .whl .released
mkdir -p .whl .released
# fvcore and iopath publish source archives only; both are pure Python, so a wheel built here runs there.
python -m pip wheel --quiet --no-deps -w .whl "fvcore==0.1.5.post20221221" "iopath==0.1.10"
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "yacs==0.1.8" "termcolor==3.3.0" "expecttest==0.3.0" "submitit==1.5.3"

git --git-dir="$sapa_git" archive HEAD sapa | tar -x -C .released
git --git-dir="$mmcv_git" archive HEAD mmcv/ops/csrc/common mmcv/ops/csrc/pytorch/cuda/carafe_cuda.cu | tar -x -C .released
if [ -n "$featup_git" ]; then
  git --git-dir="$featup_git" archive HEAD featup/adaptive_conv_cuda | tar -x -C .released
fi
if [ -n "$resfu_git" ]; then
  mkdir -p .released/resfu
  git --git-dir="$resfu_git" archive HEAD FNS_Attn/FNS_Attn FNS_Attn/__init__.py demo/resfu.py | tar -x -C .released/resfu
fi
echo "prepared: $(ls .whl | tr '\n' ' ')"
echo "released sources: $(du -sh .released | cut -f1) in .released (sapa: $(git --git-dir="$sapa_git" rev-parse --short HEAD), mmcv: $(git --git-dir="$mmcv_git" rev-parse --short HEAD))"
