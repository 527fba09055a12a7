#!/usr/bin/env bash
# Build a local stand-in for docker.io/library/python:3.11-slim, for machines that can reach the
# Debian mirror but no image registry: debootstrap a minimal bookworm (its python3 is 3.11) and
# commit it with buildah under the official name, so the Dockerfile builds unchanged.
# Cached: does nothing when the image already exists. Needs root, buildah and debootstrap.
set -euo pipefail

IMAGE="docker.io/library/python:3.11-slim"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

if buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE already present (cached)"
    exit 0
fi

# The Debian mirror apt already uses (deb822 .sources first, then one-line .list entries).
mirror="$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
if [ -z "$mirror" ]; then
    mirror="$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d /tmp/python311-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >/tmp/debootstrap.log 2>&1 || { tail -20 /tmp/debootstrap.log; exit 1; }

# Look like the official image where the Dockerfile cares: python on PATH in /usr/local/bin,
# and pip allowed to install into the system interpreter (PEP 668 marker removed).
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

container="$(buildah from scratch)"
buildah copy --quiet "$container" "$rootfs" / >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$container"
buildah commit --quiet --rm "$container" "$IMAGE" >/dev/null
echo "committed $IMAGE"
