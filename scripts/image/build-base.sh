#!/bin/sh
# Build a Python 3.11 base image from Debian packages alone, for machines that cannot pull
# python:3.11-slim from a container registry (issue 14). Debian 12's python3 is 3.11.
#
#   scripts/image/build-base.sh [IMAGE]      default IMAGE: localhost/poolgate-base:bookworm
#
# Skips the build when IMAGE already exists (FORCE=1 rebuilds). Needs root, mmdebstrap, podman,
# and a Debian mirror (MIRROR, default http://deb.debian.org).
set -eu

IMAGE=${1:-localhost/poolgate-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org}
# python3-venv: the build stage makes the venv with ensurepip; passwd (Priority: required, so in
# minbase) gives groupadd/useradd as in python:3.11-slim.
PACKAGES=${PACKAGES:-python3,python3-venv,ca-certificates}

if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMAGE"; then
	echo "base $IMAGE exists (FORCE=1 rebuilds)"
	exit 0
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# The merged-usr hook sets up /usr-merge itself, so `usrmerge` (and with it all of perl, 45 MB)
# is not installed. Manuals, docs (copyright files kept) and translations are left out.
mmdebstrap --variant=minbase --include="$PACKAGES" \
	--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	"$SUITE" "$workdir/rootfs.tar" \
	"deb $MIRROR/debian $SUITE main" \
	"deb $MIRROR/debian $SUITE-updates main" \
	"deb $MIRROR/debian-security $SUITE-security main"

podman import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'CMD ["/usr/bin/python3"]' \
	--message "Debian $SUITE minbase + $PACKAGES (mmdebstrap)" \
	"$workdir/rootfs.tar" "$IMAGE"
podman image inspect --format 'base {{.Id}} {{.Size}} bytes' "$IMAGE"
