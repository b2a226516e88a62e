#!/usr/bin/env bash
# The prepared single-GPU check (<= 10 minutes on an H100 / H200), from the repository root:
#
#   bash benchmarks/gpu/validate.sh                       # writes results/gpu/validate.json
#   bash benchmarks/gpu/validate.sh --gradient-checkpointing --out /tmp/gc.json
#   bash benchmarks/gpu/validate.sh --dry-run --out /tmp/dry.json   # tiny sizes, any machine (the tests run this)
#
# Real-size pi0 (3.5B) and an OpenVLA-7B-shaped TokenVLA built from configs (random weights, nothing is
# downloaded), bf16, LoRA and full fine-tuning, each with and without LARA: step-time ratios, samples/s and
# peak memory (benchmarks/gpu/validate.py says how). Environment: PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [[ " $* " != *" --dry-run "* ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
        echo "validate.sh: no NVIDIA GPU found (nvidia-smi failed); --dry-run runs the same code at tiny sizes" >&2
        exit 2
    }
fi
"$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__)"
exec "$PYTHON" -m lara.benchmarks.gpu.validate "$@"
