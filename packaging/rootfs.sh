#!/bin/sh
# Builds (once) a Debian bookworm userland for a foreign architecture with mmdebstrap and caches
# it as a tarball outside the repository; prints the tarball's path. Debian's own packages only:
# python3 (3.11, the interpreter the hub bundle targets) on a minimal base.
#   packaging/rootfs.sh arm64|armhf      (cache: ${IMPLANT_HUB_CACHE:-~/.cache/implant-hub})
set -eu
arch=${1:?usage: rootfs.sh arm64|armhf}
cache=${IMPLANT_HUB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/implant-hub}
# The cache key covers everything that shapes the image: suite, package list, this script.
key=$(sha256sum "$0" | cut -c1-12)
tarball="$cache/rootfs-bookworm-$arch-$key.tar"
if [ -s "$tarball" ]; then echo "$tarball"; exit 0; fi
mkdir -p "$cache"
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: run make sysdeps" >&2; exit 1; }
start=$(date +%s)
echo "building the $arch rootfs (cold, once) → $tarball" >&2
mmdebstrap --arch="$arch" --variant=minbase --include=python3 --mode=root --format=tar \
  --aptopt='Acquire::Retries "3"' \
  --dpkgopt='path-exclude=/usr/share/{doc,man,locale,info}/*' \
  bookworm "$tarball.tmp" http://deb.debian.org/debian >&2
mv "$tarball.tmp" "$tarball"
echo "rootfs $arch built in $(( $(date +%s) - start )) s ($(du -h "$tarball" | cut -f1))" >&2
echo "$tarball"
