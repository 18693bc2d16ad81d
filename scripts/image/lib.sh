# Shared by scripts/image/*.sh (sourced, POSIX sh): names, root, and the podman flags this machine
# needs. Rootful podman: as root directly, otherwise through sudo.

LOCAL_BASE=localhost/poolgate-base:bookworm
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
IMAGE=${IMAGE:-localhost/poolgate}
VERSION=${VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)}

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

pod() {
	as_root podman "$@"
}

# buildah, podman, mmdebstrap (and runc, which works where crun does not: see podman_flags).
ensure_tools() {
	missing=""
	for tool in buildah podman mmdebstrap runc; do
		command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
	done
	[ -z "$missing" ] && return 0
	echo "installing$missing (apt-get)"
	as_root apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
}

# The flags `podman run` and `podman build` need on this machine, found by starting `true` in
# IMAGE with each candidate in turn; each failure is reported on stderr with its error. Set
# PODMAN_FLAGS to skip the probe. Candidates, for the two failures seen on a VM with cgroup v1 and
# no CAP_SYS_RESOURCE:
# - --runtime=runc: crun 1.8 refuses a hybrid cgroup set-up whose cgroup2 mount still holds a
#   controller ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2");
# - --ulimit: podman's default container limits (nofile and nproc 1048576) are above the hard
#   limits, and root without CAP_SYS_RESOURCE cannot raise them ("setrlimit RLIMIT_NOFILE:
#   Operation not permitted"). podman lowers its own nproc limit to 32768 at start-up, so no
#   container can get more than that.
podman_flags() {
	if [ -n "${PODMAN_FLAGS+set}" ]; then
		echo "$PODMAN_FLAGS"
		return 0
	fi
	# The hard limits, from /proc (dash's `ulimit` has no -u).
	nofile=$(awk '/^Max open files/ {print $5}' /proc/self/limits)
	nproc=$(awk '/^Max processes/ {print $4}' /proc/self/limits)
	if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
	limits="--ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"
	for flags in "" "--runtime=runc" "$limits" "--runtime=runc $limits"; do
		# shellcheck disable=SC2086 # flags are words
		if err=$(pod run --rm $flags --entrypoint=true "$1" 2>&1); then
			echo "$flags"
			return 0
		fi
		echo "probe: podman run ${flags:-(no flags)}: $err" >&2
	done
	echo "no set of podman flags starts a container from $1 here" >&2
	return 1
}
