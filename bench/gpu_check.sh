#!/usr/bin/env bash
# The first GPU run of the engine's CUDA path (issue 28): every CUDA test, results in $OUT.
#
# On a lent device machine, from the repository root (its python3 holds torch + pytest):
#   bash bench/gpu_check.sh
# Writes $OUT/env.txt (GPU, torch), $OUT/pytest.txt (the whole log), $OUT/junit.xml and
# $OUT/rc (pytest's exit status). GPU_CHECK_TIMEOUT (s, default 480) bounds pytest so the
# files come back within one 10-minute call.
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
timeout "${GPU_CHECK_TIMEOUT:-480}" "$PY" -m pytest -p no:cacheprovider -m cuda -rA \
    --durations=25 --junitxml="$OUT/junit.xml" \
    test/engine/test_cuda_sync.py test/engine/test_cuda_graphs.py \
    test/engine/test_pipeline_cuda.py test/model/depth_anything/test_batch_recipe.py \
    test/engine/test_loading.py test/engine/test_pointcloud.py \
    test/engine/anchor/test_anchor_fit.py > "$OUT/pytest.txt" 2>&1
rc=$?
echo "$rc" > "$OUT/rc"
tail -n 60 "$OUT/pytest.txt"
exit "$rc"
