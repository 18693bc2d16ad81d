#!/bin/sh
# Install the peer routers of `make bench-peers` into a separate venv (default .venv-peers).
# Usage: benchmarks/install-peers.sh [VENV] [PYTHON]
set -eu
VENV=${1:-.venv-peers}
PYTHON=${2:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$VENV/bin/python" ]; then
	"$PYTHON" -m venv "$VENV"
fi
# Keep the venv out of git whatever the repository's .gitignore says.
printf '*\n' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip --disable-pip-version-check -q install -r "$HERE/peers-requirements.txt"
for exe in vllm-router sglang-router; do
	if [ ! -x "$VENV/bin/$exe" ]; then
		echo "install-peers: $VENV/bin/$exe is missing after installation" >&2
		exit 1
	fi
done
"$VENV/bin/python" -m pip --disable-pip-version-check list 2>/dev/null | grep -E '^(vllm-router|sglang-router) '
