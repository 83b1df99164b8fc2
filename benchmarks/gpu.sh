#!/usr/bin/env bash
# seqlift on a GPU, in one call: the device, the tests that use it, DeepLIFT side by side with tangermeme
# and a gradient pass (BPNet-like model, K = 20), and scoring end to end from BED to HDF5 against the engine
# alone. Everything it prints also goes to $OUT (default benchmarks/results), tables as markdown.
#
#   bash benchmarks/gpu.sh                      # on a machine with a CUDA GPU, about 5 to 10 minutes
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu.sh   # the same steps, tiny, on a CPU: checks the script itself
#
# Needs seqlift's dependencies importable (on a machine without them, carry wheels: ../shared/gpu.md);
# tangermeme is left out of step 3 when it is not installed (say so in the results).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's seqlift, whether or not it is installed
OUT=${OUT:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-}
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
: > "$LOG"
step() { echo "== $*" | tee -a "$LOG"; }

step "1/4 the device"
{ nvidia-smi || echo "nvidia-smi: not found"; } 2>&1 | tee -a "$LOG"
python -c "
import torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
print('torch', torch.__version__, '| CUDA available:', torch.cuda.is_available(), '| GPU:', name)
" 2>&1 | tee -a "$LOG"

step "2/4 the tests that use a device"
python -m pytest -q -p no:cacheprovider -k "cuda or device" tests/test_cli.py 2>&1 | tail -5 | tee -a "$LOG"

step "3/4 DeepLIFT side by side: seqlift, tangermeme, a gradient pass"
TOOLS=seqlift,gradient
if python -c "import tangermeme" 2>/dev/null; then TOOLS=seqlift,tangermeme,gradient; else echo "tangermeme: not installed" | tee -a "$LOG"; fi
if [ -n "$QUICK" ]; then SIZES=(--quick); else SIZES=(--regions 64 --regions-per-call 8,32,64); fi
python benchmarks/bench_deeplift.py --device "$DEVICE" --models bpnet --tools "$TOOLS" "${SIZES[@]}" \
    > "$OUT/deeplift-$DEVICE.md" 2>> "$LOG"
echo "exit $?" >> "$LOG"
tee -a "$LOG" < "$OUT/deeplift-$DEVICE.md"

step "4/4 end to end: seqlift.score from BED to HDF5 against the engine alone"
if [ -n "$QUICK" ]; then SIZES=(--quick); else SIZES=(--bpnet-regions 4096 --bpnet-batch 64 --repeats 1); fi
python benchmarks/bench_pipeline.py --device "$DEVICE" --end-to-end-only "${SIZES[@]}" \
    > "$OUT/pipeline-$DEVICE.md" 2>> "$LOG"
echo "exit $?" >> "$LOG"
tee -a "$LOG" < "$OUT/pipeline-$DEVICE.md"
