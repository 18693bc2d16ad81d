#!/bin/sh
# `make test-image` (after `make image`): start the image and check it (scripts/image/smoke.py).
set -eu
cd "$(dirname "$0")/../.."
. scripts/image/lib.sh

flags=$(podman_flags "$IMAGE:dev")
podman="podman"
[ "$(id -u)" = 0 ] || podman="sudo podman"
exec python3 scripts/image/smoke.py --image "$IMAGE:dev" --version "$VERSION" \
	--podman "$podman" --flags "$flags"
