#!/usr/bin/env bash
# The CUDA path end to end, on a machine with an NVIDIA GPU and the requirements installed (no ROS
# needed): the extension imports after torch, the demo scene is rendered, mapped on the GPU with the
# cpu preset and evaluated there. Usage: bench/gpu_check.sh [OUT_DIR] (default /tmp/glace_gpu_check);
# PYTHON picks the interpreter (default: python3). Results: BENCHMARKS.md, "The CUDA path on an H200".
set -euo pipefail
PY="${PYTHON:-python3}"
OUT="${1:-/tmp/glace_gpu_check}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
[ -n "$(ls dsac_native/_dsac_native*.so 2>/dev/null)" ] || "$PY" setup.py build_ext --inplace >/dev/null
# once torch is loaded, an extension built against a newer libstdc++ than torch's crashed here
"$PY" -c "import torch, dsac_native; print('dsac_native imports after torch; kernels:', dsac_native.kernel_isa())"
[ -f "$OUT/scene/scene.json" ] || "$PY" -m glace_core.cli.make_scene "$OUT/scene" --seed 7 --n-train 250 --n-test 50 --resolution 480x640
"$PY" -m glace_core.cli.train "$OUT/scene" "$OUT/map.pt" --preset "${PRESET:-cpu}" --device cuda --no-progress
"$PY" -m glace_core.cli.evaluate "$OUT/scene" "$OUT/map.pt" --device cuda
