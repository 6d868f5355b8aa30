#!/usr/bin/env bash
# The prepared GPU check (issue 16): on a CUDA machine, set up, run the GPU-marked tests and the sim,
# neural and control benchmarks with the solver and the networks on the GPU, and write their JSON to
# ${OUT:-gpu_check}/. Meant to finish within 8 minutes; each step has its own time limit.
#
#   bash scripts/gpu_check.sh                 # uses ./.venv if it has a CUDA torch, else makes .venv-gpu
#   GPU_WHEELS=/path/to/wheels bash scripts/gpu_check.sh   # a machine without network: install from there
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/log.txt"; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
    log "no nvidia-smi: this is not a CUDA machine"; exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

VENV=.venv
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; }; then
    VENV=.venv-gpu
    if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; }; then
        log "making $VENV with a CUDA build of torch"
        python3 -m venv "$VENV"
        PIP=("$VENV/bin/python" -m pip install -q)
        if [ -n "${GPU_WHEELS:-}" ]; then PIP+=(--no-index --find-links "$GPU_WHEELS"); fi
        # PyPI's Linux wheel of torch is the CUDA build (the README's CPU command takes the CPU wheel).
        "${PIP[@]}" torch==2.13.0 || { log "could not install a CUDA torch"; exit 3; }
        "${PIP[@]}" -e ".[test]" || { log "could not install sluice"; exit 3; }
    fi
fi
PY="$VENV/bin/python"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
    | tee -a "$OUT/log.txt"

status=0
log "GPU-marked tests"
timeout 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -5 | tee -a "$OUT/log.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

for suite in sim neural control; do
    quick=""
    limit=180
    if [ "$suite" != sim ]; then quick="--quick"; limit=150; fi
    log "bench $suite --arch cuda --device cuda $quick"
    timeout "$limit" "$PY" main.py bench "$suite" --arch cuda --device cuda $quick --json "$OUT/bench_$suite.json" \
        > "$OUT/bench_$suite.txt" 2>&1
    rc=$?
    tail -40 "$OUT/bench_$suite.txt" | tee -a "$OUT/log.txt"
    [ "$rc" = 0 ] || { log "bench $suite exited $rc"; status=1; }
done
log "done (status $status); JSON in $OUT/"
exit $status
