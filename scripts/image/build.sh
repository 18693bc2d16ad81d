#!/bin/sh
# `make image`: the poolgate image, tagged IMAGE:dev and IMAGE:VERSION (pyproject.toml), with
# podman (rootful). BASE_IMAGE defaults to localhost/poolgate-base:bookworm, built here from
# Debian packages when missing (scripts/image/build-base.sh); BASE_IMAGE=python:3.11-slim
# pulls the official image instead.
#
# RUN steps trust the host's CA bundle (CA_BUNDLE, bind-mounted over the base's
# /etc/ssl/certs/ca-certificates.crt for the build only, not stored in the image), so pip reaches
# PyPI through a TLS-intercepting proxy. CA_BUNDLE= (empty) turns that off.
set -eu
cd "$(dirname "$0")/../.."
. scripts/image/lib.sh

ensure_tools
start=$(date +%s)
if [ "$BASE_IMAGE" = "$LOCAL_BASE" ]; then
	as_root sh scripts/image/build-base.sh "$LOCAL_BASE"
elif ! pod image exists "$BASE_IMAGE"; then
	pod pull "$BASE_IMAGE"
fi
based=$(date +%s)

flags=$(podman_flags "$BASE_IMAGE")
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
mounts=""
if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
	mounts="--volume $CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro"
fi
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- Dockerfile pyproject.toml README.md src 2>/dev/null)" ]; then
	revision="$revision-dirty"
fi

previous=$(pod image inspect --format '{{.Id}}' "$IMAGE:dev" 2>/dev/null || true)
echo "podman build ${flags:+$flags }BASE_IMAGE=$BASE_IMAGE -> $IMAGE:dev $IMAGE:$VERSION"
# shellcheck disable=SC2086 # flags and mounts are words
pod build $flags $mounts \
	--build-arg BASE_IMAGE="$BASE_IMAGE" \
	--build-arg VERSION="$VERSION" \
	--build-arg REVISION="$revision" \
	--tag "$IMAGE:dev" --tag "$IMAGE:$VERSION" .
done=$(date +%s)
# The image this build replaced, now untagged: removed by id (its layers stay as build cache).
if [ -n "$previous" ] && [ "$previous" != "$(pod image inspect --format '{{.Id}}' "$IMAGE:dev")" ] \
	&& [ -z "$(pod image inspect --format '{{.RepoTags}}' "$previous" | tr -d '[]')" ]; then
	pod rmi "$previous" >/dev/null || true
fi

size=$(pod image inspect --format '{{.Size}}' "$IMAGE:dev")
echo "$IMAGE:dev ($IMAGE:$VERSION): $((size / 1000000)) MB ($size bytes) on $BASE_IMAGE;" \
	"base $((based - start)) s, image $((done - based)) s"
