#!/usr/bin/env bash
# podman-env.sh — a private Podman setup for cunicorn's container tests.
#
# Owns: a containers.conf and storage.conf of its own (nothing is written to
# /etc), the image store under $CUNICORN_PODMAN_DIR (default
# /var/cache/cunicorn-podman, persists across runs so the base image and the
# build cache are reused), and the offline base image
# docker.io/library/debian:bookworm-slim built with debootstrap from the
# machine's Debian mirror when no registry is reachable.
# Never: touches the system's Podman configuration, pulls from a registry,
# or removes images it did not make.
#
# Usage:
#   eval "$(scripts/podman-env.sh env)"   export CONTAINERS_CONF / _STORAGE_CONF
#   scripts/podman-env.sh base-image      also build the base image if missing
#   scripts/podman-env.sh check           base-image, then `ps aux` in a container
#
# Why the settings (see /work/shared/CONTAINERS.md): crun refuses this kind
# of machine's hybrid cgroup layout, so runtime = runc; root here cannot raise
# RLIMIT_NOFILE, and Podman asks for more by default, so the ulimits are the
# current hard limits (nproc capped at 32768, Podman's own cap).
set -euo pipefail

BASE_IMAGE=docker.io/library/debian:bookworm-slim
DIR=${CUNICORN_PODMAN_DIR:-}
if [ -z "$DIR" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		DIR=/var/cache/cunicorn-podman
	else
		DIR=${XDG_CACHE_HOME:-$HOME/.cache}/cunicorn-podman
	fi
fi
if [ "$(id -u)" -eq 0 ]; then
	RUNDIR=/run/cunicorn-podman
else
	RUNDIR=${XDG_RUNTIME_DIR:-/tmp}/cunicorn-podman-$(id -u)
fi

write_conf() {
	mkdir -p "$DIR/storage" "$RUNDIR/run" "$RUNDIR/tmp"
	local nofile nproc
	nofile=$(ulimit -Hn)
	[ "$nofile" = unlimited ] && nofile=1048576
	nproc=$(ulimit -Hu)
	if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then
		nproc=32768
	fi
	local cc="$DIR/containers.conf" sc="$DIR/storage.conf"
	cat >"$cc.tmp.$$" <<EOF
# Written by scripts/podman-env.sh; regenerated on every use.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
tmp_dir = "$RUNDIR/tmp"
EOF
	mv -f "$cc.tmp.$$" "$cc"
	cat >"$sc.tmp.$$" <<EOF
# Written by scripts/podman-env.sh; regenerated on every use.
[storage]
driver = "overlay"
graphroot = "$DIR/storage"
runroot = "$RUNDIR/run"
EOF
	mv -f "$sc.tmp.$$" "$sc"
	export CONTAINERS_CONF="$cc" CONTAINERS_STORAGE_CONF="$sc"
}

mirror() {
	local m=""
	if [ -f /etc/apt/sources.list ]; then
		m=$(awk '$1 == "deb" && $0 ~ /bookworm/ && $0 !~ /security/ {
			for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
			/etc/apt/sources.list)
	fi
	if [ -z "$m" ]; then
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			m=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' "$f")
			[ -n "$m" ] && break
		done
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

base_image() {
	command -v podman >/dev/null || { echo "podman-env.sh: podman is not installed (scripts/deps.sh container)" >&2; return 1; }
	# One builder at a time; others wait, then find the image present.
	exec 9>"$DIR/.base-image.lock"
	flock 9
	if podman image exists "$BASE_IMAGE"; then
		exec 9>&-
		return 0
	fi
	command -v debootstrap >/dev/null || { echo "podman-env.sh: debootstrap is not installed" >&2; return 1; }
	local m rootfs
	m=$(mirror)
	rootfs=$(mktemp -d "$DIR/rootfs.XXXXXX")
	echo "podman-env.sh: building $BASE_IMAGE with debootstrap from $m (about a minute)" >&2
	if ! debootstrap --variant=minbase --include=procps bookworm "$rootfs" "$m" >"$DIR/debootstrap.log" 2>&1; then
		echo "podman-env.sh: debootstrap failed, see $DIR/debootstrap.log" >&2
		tail -n 20 "$DIR/debootstrap.log" >&2
		rm -rf "$rootfs"
		return 1
	fi
	# A slim image: no apt lists or caches.
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
	rm -rf "$rootfs"
	exec 9>&-
	echo "podman-env.sh: $BASE_IMAGE imported" >&2
}

check() {
	base_image
	local out
	out=$(podman run --rm "$BASE_IMAGE" ps aux)
	echo "$out"
	echo "$out" | grep -q "ps aux" || { echo "podman-env.sh: container did not run ps" >&2; return 1; }
}

write_conf
case "${1:-env}" in
env)
	echo "export CONTAINERS_CONF='$CONTAINERS_CONF'"
	echo "export CONTAINERS_STORAGE_CONF='$CONTAINERS_STORAGE_CONF'"
	;;
base-image) base_image ;;
check) check ;;
*) echo "usage: $0 [env|base-image|check]" >&2; exit 2 ;;
esac
