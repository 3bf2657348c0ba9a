#!/usr/bin/env bash
# Builds the real OS images the scanner's tests read (crates/scan/tests/os_*.rs), offline from
# the Debian mirror apt uses, as OCI image layouts:
#
#   OUTDIR/debian-oci        `debootstrap --variant=minbase bookworm` (less apt's cached .debs),
#                            one gzip layer; also OUTDIR/debian-rootfs, the root filesystem
#   OUTDIR/debian-zstd-oci   the same image with its layer recompressed to zstd (skopeo)
#   OUTDIR/debian-whiteout-oci  the base + a layer whiting out /var/lib/dpkg/status
#   OUTDIR/debian-statusd-oci   the base + a layer adding distroless-style
#                               /var/lib/dpkg/status.d/{libc6,zlib1g} files
#   OUTDIR/debian-opaque-oci    statusd + a layer making /var/lib/dpkg opaque, with a new
#                               `status` listing only base-files and libc6
#                            (all tagged `latest`)
#   OUTDIR/rpm-oci           a root filesystem with three rpms built here with rpmbuild
#                            (scripts/scan-fixtures/*.spec) and installed with Debian's rpm into
#                            its SQLite rpmdb (/var/lib/rpm/rpmdb.sqlite), one gzip layer
#
# Usage: scripts/scan-fixtures.sh OUTDIR
# Idempotent: each fixture is rebuilt only when its stamp (below) differs from the one it was
# built with (OUTDIR/NAME.stamp); concurrent runs on one OUTDIR wait for each other (flock).
# About 1.5 minutes the first time, nothing after. Needs root (debootstrap) and the tools
# scripts/install-test-deps.sh installs: debootstrap, umoci, skopeo, rpm (rpmbuild), GNU tar,
# dpkg-query. DEBIAN_MIRROR overrides the mirror (default: the first one in apt's sources).
# The Debian packages are whatever bookworm has today: the tests compare against dpkg's, syft's
# and trivy's view of the same image, never against pinned versions.
#
# Alpine: no rootfs is built. Debian bookworm packages neither apk-tools nor apk-tools-static,
# and the Alpine CDN is not reachable from this machine, so there is no real apk database to
# install packages with.
set -euo pipefail

# One stamp per fixture: bump a fixture's when what it builds changes (those built on the
# Debian base include its stamp, so they follow it).
DEBIAN_STAMP=1
ZSTD_STAMP=$DEBIAN_STAMP.1
WH_STAMP=$DEBIAN_STAMP.1
RPM_STAMP=1
OUT=${1:?usage: scan-fixtures.sh OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec 9>"$OUT/.lock"
flock 9

# Adds directory $2's content as a new top layer of image $1 (LAYOUT:TAG). The tar is written by
# GNU tar and gzipped by `umoci raw add-layer`: umoci 0.4.7's own `insert` writes layers whose
# tar stream is cut short (the last file's data and the end blocks go missing).
add_layer() {
  local tarfile="$OUT/layer.tmp.tar"
  (cd "$2" && tar --sort=name --numeric-owner --owner=0 --group=0 -cf "$tarfile" -- $(ls -A | LC_ALL=C sort))
  umoci raw add-layer --image "$1" "$tarfile"
  rm -f "$tarfile"
}

fresh() { [ "$(cat "$OUT/$1.stamp" 2>/dev/null)" = "$2" ]; } # NAME STAMP
done_() { echo "$2" >"$OUT/$1.stamp"; }                       # NAME STAMP
log() { echo "scan-fixtures: $*" >&2; }

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# (a) Debian bookworm minbase.
if ! fresh debian "$DEBIAN_STAMP"; then
  log "debootstrap --variant=minbase bookworm (about a minute)"
  rm -rf "$OUT/debian-rootfs" "$OUT/debian-oci" "$OUT/debian-rootfs.tmp"
  debootstrap --variant=minbase bookworm "$OUT/debian-rootfs.tmp" "$(mirror)" >"$OUT/debootstrap.log" 2>&1 \
    || { tail -20 "$OUT/debootstrap.log" >&2; exit 1; }
  # apt's downloaded .debs are not part of the image (debootstrap leaves them in the cache).
  rm -f "$OUT/debian-rootfs.tmp"/var/cache/apt/archives/*.deb
  mv "$OUT/debian-rootfs.tmp" "$OUT/debian-rootfs"
  umoci init --layout "$OUT/debian-oci"
  umoci new --image "$OUT/debian-oci:latest"
  add_layer "$OUT/debian-oci:latest" "$OUT/debian-rootfs"
  umoci gc --layout "$OUT/debian-oci"
  done_ debian "$DEBIAN_STAMP"
  rm -f "$OUT/debian-zstd.stamp" "$OUT/debian-wh.stamp" # built from the old base
fi

# The same image, zstd-compressed.
if ! fresh debian-zstd "$ZSTD_STAMP"; then
  log "recompressing the Debian layer with zstd"
  rm -rf "$OUT/debian-zstd-oci"
  skopeo copy -q --dest-compress-format zstd "oci:$OUT/debian-oci:latest" "oci:$OUT/debian-zstd-oci:latest"
  done_ debian-zstd "$ZSTD_STAMP"
fi

# Whiteouts, distroless status.d files, an opaque directory: the base image plus layers, each
# variant its own layout (syft reads one image per layout), sharing the base's blob files.
variant() { # FROM TO: a copy of layout FROM (blobs hard-linked: umoci never rewrites one)
  rm -rf "$OUT/$2"
  mkdir -p "$OUT/$2"
  cp -al "$OUT/$1/blobs" "$OUT/$2/blobs"
  cp "$OUT/$1/index.json" "$OUT/$1/oci-layout" "$OUT/$2/"
}
if ! fresh debian-wh "$WH_STAMP"; then
  log "layering whiteouts and an opaque directory"
  T="$OUT/wh.tmp"
  rm -rf "$T"
  mkdir -p "$T"
  DB="$OUT/debian-rootfs/var/lib/dpkg"
  variant debian-oci debian-whiteout-oci
  mkdir -p "$T/wh/var/lib/dpkg" && : >"$T/wh/var/lib/dpkg/.wh.status"
  add_layer "$OUT/debian-whiteout-oci:latest" "$T/wh"
  variant debian-oci debian-statusd-oci
  mkdir -p "$T/sd/var/lib/dpkg/status.d"
  for p in libc6 zlib1g; do dpkg-query --admindir="$DB" -s "$p" >"$T/sd/var/lib/dpkg/status.d/$p"; done
  add_layer "$OUT/debian-statusd-oci:latest" "$T/sd"
  variant debian-statusd-oci debian-opaque-oci
  mkdir -p "$T/op/var/lib/dpkg" && : >"$T/op/var/lib/dpkg/.wh..wh..opq"
  { dpkg-query --admindir="$DB" -s base-files; echo; dpkg-query --admindir="$DB" -s libc6; } >"$T/op/var/lib/dpkg/status"
  add_layer "$OUT/debian-opaque-oci:latest" "$T/op"
  rm -rf "$T"
  done_ debian-wh "$WH_STAMP"
fi

# (c) rpm: packages built here, installed into a SQLite rpmdb.
if ! fresh rpm "$RPM_STAMP"; then
  [ "$(rpm --eval '%_db_backend')" = sqlite ] || { log "rpm's database backend is not sqlite"; exit 1; }
  log "building and installing rpms"
  T="$OUT/rpm.tmp"
  rm -rf "$T" "$OUT/rpm-oci" "$OUT/rpm-rootfs"
  mkdir -p "$T"
  for spec in "$HERE"/scan-fixtures/*.spec; do
    rpmbuild --quiet --define "_topdir $T/top" --define "_build_id_links none" -bb "$spec" >"$T/build.log" 2>&1 \
      || { cat "$T/build.log" >&2; exit 1; }
  done
  R="$OUT/rpm-rootfs"
  mkdir -p "$R"
  rpm --root "$R" --dbpath /var/lib/rpm --initdb
  rpm --root "$R" --dbpath /var/lib/rpm -i --nodeps --ignoreos --ignorearch "$T"/top/RPMS/*/*.rpm 2>/dev/null
  umoci init --layout "$OUT/rpm-oci"
  umoci new --image "$OUT/rpm-oci:latest"
  add_layer "$OUT/rpm-oci:latest" "$R"
  rm -rf "$T"
  done_ rpm "$RPM_STAMP"
fi
log "ok: $OUT"
