#!/usr/bin/env bash
# The first GPU run of the engine's CUDA path (issue 28): every CUDA test, results in $OUT.
#
# On a lent device machine, from the repository root (its python3 holds torch + pytest):
#   bash bench/gpu_check.sh
# Writes $OUT/env.txt (GPU, torch), $OUT/pytest.txt (the whole log), $OUT/junit.xml and
# $OUT/rc (pytest's exit status), then the memory of the full Depth Pro and the Large
# Depth Anything models per precision (issue 27): $OUT/memory.json and $OUT/memory.txt;
# then the full Depth Pro at 1536^2, torch fp16 / bf16 and (where the tensorrt package is
# importable; else the JSON says it is not) a TensorRT fp16 engine against torch fp32
# (issue 25): $OUT/tensorrt.json and $OUT/tensorrt.txt.
# GPU_CHECK_TIMEOUT (s, default 330) bounds pytest, GPU_MEMORY_TIMEOUT (s, default
# 120) the memory benchmark and GPU_TENSORRT_TIMEOUT (s, default 75; give a machine with
# TensorRT 450 and the others less: its export and engine build take minutes) the
# TensorRT one: 525 s in all, so the files come back within one call of at most 580 s.
set -u
OUT=${OUT:-/tmp/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), "devices", torch.cuda.device_count())'
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout "${GPU_CHECK_TIMEOUT:-330}" "$PY" -m pytest -p no:cacheprovider -m cuda -rA \
    --durations=25 --junitxml="$OUT/junit.xml" \
    test/engine/test_cuda_sync.py test/engine/test_cuda_graphs.py \
    test/engine/test_pipeline_cuda.py test/model/depth_anything/test_batch_recipe.py \
    test/engine/test_loading.py test/engine/test_pointcloud.py \
    test/engine/anchor/test_anchor_fit.py test/model/test_memory.py \
    test/engine/backends/test_tensorrt.py > "$OUT/pytest.txt" 2>&1
rc=$?
echo "$rc" > "$OUT/rc"
tail -n 60 "$OUT/pytest.txt"
timeout "${GPU_MEMORY_TIMEOUT:-120}" "$PY" bench/bench_memory.py --device cuda \
    --families full da_vitl pda_vitl --out "$OUT/memory.json" > "$OUT/memory.txt" 2>&1
tail -n 20 "$OUT/memory.txt"
timeout "${GPU_TENSORRT_TIMEOUT:-75}" "$PY" bench/bench_tensorrt.py --device cuda \
    --config full --reps 20 --out "$OUT/tensorrt.json" > "$OUT/tensorrt.txt" 2>&1
tail -n 20 "$OUT/tensorrt.txt"
exit "$rc"
