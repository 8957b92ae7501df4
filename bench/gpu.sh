#!/usr/bin/env bash
# The GPU figures in one prepared run, for a machine with one NVIDIA GPU:
#   - a training step of each shipped recipe's network family at fp32 and with AMP (bench/train_step.py for the dual
#     PSPNet of exudate_dsm, bench/hrdecoder.py for HRDecoder);
#   - each shipped model's inference throughput on one GPU, at fp32 and with AMP, through the bundle's own command
#     (bench/inference.py --processes 1: photographs per second of the run, batches of 4, 8 loader workers).
# Usage: bash bench/gpu.sh [OUT]   (default: $OUT, else bench-gpu); each check's output goes to OUT/<check>.txt and
# its last lines to the terminal. A check that fails or runs past 15 minutes is reported and the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench-gpu}}"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || { echo "no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 1; }
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'" || exit 1

check() {
    local name=$1
    shift
    echo "== $name: $*"
    timeout 900 "$@" > "$out/$name.txt" 2>&1
    echo "exit status $?" >> "$out/$name.txt"
    tail -n 8 "$out/$name.txt"
}

check train_step_dual_pspnet_fp32 python bench/train_step.py --device cuda --iters 20 --sections step
check train_step_dual_pspnet_amp python bench/train_step.py --device cuda --amp --iters 20 --sections step
check train_step_hrdecoder_fp32 python bench/hrdecoder.py --device cuda --iters 10
check train_step_hrdecoder_amp python bench/hrdecoder.py --device cuda --amp --iters 10
for bundle in exudate_dsm fundus_lesion_hrdecoder; do
    check "inference_${bundle}_fp32" python bench/inference.py --bundle "$bundle" --processes 1 --copies 8 \
        --batch-size 4 --num-workers 8 --num-writers 4
    check "inference_${bundle}_amp" python bench/inference.py --bundle "$bundle" --processes 1 --copies 8 \
        --batch-size 4 --num-workers 8 --num-writers 4 --amp
done
