#!/usr/bin/env bash
# Builds Wharf's own OCI image from a built `wharf` binary, without a container daemon (umoci),
# into an OCI image layout; optionally pushes it (skopeo), signs it (`wharf sign`) and attaches
# its SBOM (`wharf sbom`) as an OCI 1.1 referrer.
#
#   scripts/build-image.sh [--build | --binary PATH] [--out DIR] [--version V] [--tag T]...
#                          [--strip debug|all|none] [--source URL] [--force]
#                          [--push HOST/REPO[:TAG]] [--insecure] [--sign-key KEY]
#
# The image is distroless-style, one layer:
#   /usr/local/bin/wharf                 the binary (debug info stripped by default: --strip)
#   exactly the shared libraries `ldd` lists for it (the dynamic loader at its PT_INTERP path,
#   libc, libm, libgcc_s), copied from this machine, so they are the ones the binary was built
#   and tested against; their Debian package records in /var/lib/dpkg/status.d/ (as distroless
#   images have them, so `wharf scan` and other scanners see glibc's version) and their
#   copyright files; /etc/os-release of the system they came from
#   /etc/ssl/certs/ca-certificates.crt   CA roots (the pull-through cache's upstreams, feeds)
#   /etc/passwd, /etc/group              root and wharf (65532), no login shell
#   /etc/nsswitch.conf                   files, then DNS
#   /tmp (1777), /var/lib/wharf (65532, 0700: the data volume)
# No shell, no package manager. Config: USER 65532:65532, ENTRYPOINT ["/usr/local/bin/wharf"],
# CMD ["serve", "--listen", "0.0.0.0:5000", "--data-dir", "/var/lib/wharf"], ports 5000/tcp
# (registry) and 5001/tcp (metrics, when --metrics-listen is given), VOLUME /var/lib/wharf, and
# the OCI annotations org.opencontainers.image.{title,description,version,revision,source,
# created,licenses} on the manifest (the same as config labels).
#
# The SBOM lists the Rust crates compiled into wharf only when the binary carries cargo-auditable's
# dependency record (its .dep-v0 section, read by `wharf scan`/`wharf sbom`): --build builds such a
# binary (`cargo auditable build --release -p wharf`; cargo-auditable from PATH, or where
# scripts/install-test-deps.sh puts it, or `cargo install cargo-auditable`). A binary without
# the record is packed all the same, with a warning that its SBOM names only the system packages.
#
# Reproducible: every file's mtime, the config's and history's `created` are SOURCE_DATE_EPOCH
# (default: the last commit's time), so the same binary and machine give the same digest.
#
# Layout tags: VERSION (default: what `wharf --version` prints), every --tag, and VERSION.sbom,
# the SBOM artifact (artifactType application/vnd.cyclonedx+json, subject the image).
#
# --push REF copies the image to REF with skopeo (credentials: skopeo's auth files, as `skopeo
# login` writes them), then the SBOM artifact by digest (a referrer of the image: `GET
# /v2/REPO/referrers/DIGEST` lists it), then signs the pushed digest with `wharf sign --key KEY`
# (cosign's format; the key's password from COSIGN_PASSWORD). --insecure: plain HTTP / no TLS
# verification for the push (loopback registries are always plain HTTP for `wharf sign`).
#
# Needs: umoci, python3, objcopy (binutils) unless --strip none, and skopeo for --push; root
# (the data directory is chowned to 65532 in the layer). Debian: apt-get install umoci skopeo
# binutils python3 (scripts/install-test-deps.sh installs them).
set -euo pipefail

die() { echo "build-image: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

REPO="$(cd "$(dirname "$0")/.." && pwd)"
BINARY=""
OUT="wharf-image"
VERSION=""
TAGS=()
STRIP="debug"
SOURCE=""
FORCE=0
PUSH=""
INSECURE=0
SIGN_KEY=""
BUILD=0

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
    --build) BUILD=1; shift ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
    --tag) TAGS+=("${2:?--tag needs a value}"); shift 2 ;;
    --strip) STRIP="${2:?--strip needs debug, all or none}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a URL}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --push) PUSH="${2:?--push needs HOST/REPO[:TAG]}"; shift 2 ;;
    --insecure) INSECURE=1; shift ;;
    --sign-key) SIGN_KEY="${2:?--sign-key needs a key file}"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "build-image: unknown argument: $1" >&2; usage 2 ;;
  esac
done

case "$STRIP" in debug|all|none) ;; *) die "--strip takes debug, all or none, not $STRIP" ;; esac
[ "$(id -u)" = 0 ] || die "run as root: the layer records /var/lib/wharf as owned by 65532"
for tool in umoci python3 ldd; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-test-deps.sh installs it)"
done
[ "$STRIP" = none ] || command -v objcopy >/dev/null || die "objcopy is missing (binutils), or use --strip none"
[ -z "$PUSH" ] || command -v skopeo >/dev/null || die "skopeo is missing: needed for --push"
[ -z "$SIGN_KEY" ] || [ -n "$PUSH" ] || die "--sign-key signs the pushed image: give --push too"
[ -z "$SIGN_KEY" ] || [ -r "$SIGN_KEY" ] || die "cannot read the signing key $SIGN_KEY"

if [ "$BUILD" = 1 ]; then
  [ -z "$BINARY" ] || die "--build and --binary exclude each other"
  CA_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-deps/cargo-auditable/bin"
  PATH="$PATH:$CA_CACHE" command -v cargo-auditable >/dev/null \
    || die "cargo-auditable is missing: cargo install --locked cargo-auditable (or run scripts/install-test-deps.sh)"
  (cd "$REPO" && PATH="$PATH:$CA_CACHE" cargo auditable build --release --locked -p wharf) \
    || die "cargo auditable build failed"
fi
if [ -z "$BINARY" ]; then
  BINARY="${CARGO_TARGET_DIR:-$REPO/target}/release/wharf"
  [ -x "$BINARY" ] || die "no $BINARY: build it (cargo build --release -p wharf) or give --binary PATH"
fi
[ -x "$BINARY" ] || die "$BINARY is not an executable file"
BINARY="$(readlink -f "$BINARY")"
# cargo-auditable's record of the crates compiled in (what the SBOM's Rust components come from).
if ! python3 - "$BINARY" <<'EOF'
import struct, sys
with open(sys.argv[1], "rb") as f:
    elf = f.read()
# 64-bit little-endian ELF: the section headers and their name table.
if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
    sys.exit(1)
shoff, = struct.unpack_from("<Q", elf, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
def header(i):
    return struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
names_off = header(shstrndx)[4]
for i in range(shnum):
    name_at = names_off + header(i)[0]
    if elf[name_at:elf.index(b"\0", name_at)] == b".dep-v0":
        sys.exit(0)
sys.exit(1)
EOF
then
  echo "build-image: warning: $BINARY has no cargo-auditable dependency record (.dep-v0): the SBOM will list the system packages but not the Rust crates compiled into wharf; build with --build (cargo auditable) for a complete one" >&2
fi
if [ -z "$VERSION" ]; then
  VERSION="$("$BINARY" --version | awk '{print $2}')"
  [ -n "$VERSION" ] || die "could not read the version from $BINARY --version: give --version"
fi

case "$(uname -m)" in
  x86_64) ARCH=amd64 ;;
  aarch64) ARCH=arm64 ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac

# Metadata for the annotations.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
REVISION="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$REVISION" != unknown ] && ! git -C "$REPO" diff --quiet HEAD -- 2>/dev/null; then
  echo "build-image: warning: the work tree has uncommitted changes; revision $REVISION does not describe them" >&2
fi
if [ -z "$SOURCE" ]; then
  SOURCE="$(git -C "$REPO" remote get-url origin 2>/dev/null || true)"
  # git@host:owner/repo.git -> https://host/owner/repo
  if [[ "$SOURCE" =~ ^git@([^:]+):(.+)$ ]]; then SOURCE="https://${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"; fi
  SOURCE="${SOURCE%.git}"
  [ -n "$SOURCE" ] || echo "build-image: warning: no --source and no git remote: org.opencontainers.image.source is left out" >&2
fi
LICENSES="$(sed -n 's/^license *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n1)"

if [ -e "$OUT" ]; then
  [ "$FORCE" = 1 ] || die "$OUT exists: remove it or give --force"
  [ ! -e "$OUT/oci-layout" ] && [ -n "$(ls -A "$OUT")" ] && die "$OUT is not an OCI layout: not replacing it"
  rm -rf "$OUT"
fi

START=$(date +%s.%N)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"

# --- the root filesystem --------------------------------------------------------------------
install -d -m 0755 "$ROOT"/{etc/ssl/certs,usr/local/bin,var/lib,var/lib/dpkg/status.d,usr/share/doc}
install -d -m 1777 "$ROOT/tmp"
install -d -m 0700 -o 65532 -g 65532 "$ROOT/var/lib/wharf"

case "$STRIP" in
  debug) objcopy --strip-debug "$BINARY" "$ROOT/usr/local/bin/wharf" ;;
  all) objcopy --strip-all "$BINARY" "$ROOT/usr/local/bin/wharf" ;;
  none) cp "$BINARY" "$ROOT/usr/local/bin/wharf" ;;
esac
chmod 0755 "$ROOT/usr/local/bin/wharf"

# Exactly the libraries ldd resolves (and the loader), at the paths it resolves them to.
LIBS=()
while read -r path; do
  LIBS+=("$path")
done < <(ldd "$BINARY" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
if [ "${#LIBS[@]}" -eq 0 ]; then
  die "ldd lists no libraries for $BINARY (a static binary?): this script expects a dynamically linked one"
fi
PACKAGES=()
for lib in "${LIBS[@]}"; do
  install -d -m 0755 "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
  chmod 0755 "$ROOT$lib"
  # `dpkg-query -S PATH` prints "PACKAGE[:ARCH]: PATH" (nothing off Debian).
  pkg="$(dpkg-query -S "$lib" 2>/dev/null | grep -v '^diversion' | head -n1 | sed 's/: .*//' || true)"
  [ -n "$pkg" ] || pkg="$(dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null | grep -v '^diversion' | head -n1 | sed 's/: .*//' || true)"
  if [ -n "$pkg" ]; then PACKAGES+=("$pkg"); fi
done
# The packages the libraries come from: their dpkg records (distroless' status.d layout: one
# stanza per file) and copyright files.
if [ "${#PACKAGES[@]}" -gt 0 ]; then
  for pkg in $(printf '%s\n' "${PACKAGES[@]}" | sort -u); do
    name="${pkg%%:*}"
    dpkg-query -s "$pkg" > "$ROOT/var/lib/dpkg/status.d/$name"
    if [ -r "/usr/share/doc/$name/copyright" ]; then
      install -d -m 0755 "$ROOT/usr/share/doc/$name"
      install -m 0644 "/usr/share/doc/$name/copyright" "$ROOT/usr/share/doc/$name/copyright"
    fi
  done
  # The system the libraries (and so their advisories) belong to.
  install -m 0644 "$(readlink -f /etc/os-release)" "$ROOT/etc/os-release"
fi

CA=/etc/ssl/certs/ca-certificates.crt
[ -s "$CA" ] || die "$CA is missing: apt-get install ca-certificates"
install -m 0644 "$CA" "$ROOT$CA"
if [ -r /usr/share/doc/ca-certificates/copyright ]; then
  install -d -m 0755 "$ROOT/usr/share/doc/ca-certificates"
  install -m 0644 /usr/share/doc/ca-certificates/copyright "$ROOT/usr/share/doc/ca-certificates/copyright"
fi

printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'wharf:x:65532:65532:wharf:/var/lib/wharf:/sbin/nologin' > "$ROOT/etc/passwd"
printf '%s\n' 'root:x:0:' 'wharf:x:65532:' > "$ROOT/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' > "$ROOT/etc/nsswitch.conf"
chmod 0644 "$ROOT"/etc/{passwd,group,nsswitch.conf}

# Fixed mtimes (symlinks too): the layer's bytes depend only on the content.
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- the image ------------------------------------------------------------------------------
# Named "wharf": the SBOM names the image after the layout directory (oci:wharf:VERSION).
LAYOUT="$WORK/wharf"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$VERSION"
umoci insert --image "$LAYOUT:$VERSION" --history.created "$CREATED" \
  --history.created_by "scripts/build-image.sh (umoci insert)" \
  --history.comment "wharf $VERSION, its shared libraries, CA certificates, passwd/group" \
  "$ROOT" /

ANNOTATIONS=(
  "org.opencontainers.image.title=wharf"
  "org.opencontainers.image.description=Wharf, a Kubernetes-native OCI registry"
  "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.revision=$REVISION"
  "org.opencontainers.image.created=$CREATED"
)
[ -z "$LICENSES" ] || ANNOTATIONS+=("org.opencontainers.image.licenses=$LICENSES")
[ -z "$SOURCE" ] || ANNOTATIONS+=("org.opencontainers.image.source=$SOURCE")
CONFIG_ARGS=(
  --created "$CREATED" --history.created "$CREATED"
  --history.created_by "scripts/build-image.sh (umoci config)"
  --os linux --architecture "$ARCH"
  --config.user 65532:65532
  --config.entrypoint /usr/local/bin/wharf
  --config.cmd serve --config.cmd --listen --config.cmd 0.0.0.0:5000
  --config.cmd --data-dir --config.cmd /var/lib/wharf
  --config.env PATH=/usr/local/bin
  --config.exposedports 5000/tcp --config.exposedports 5001/tcp
  --config.volume /var/lib/wharf
  --config.workingdir /var/lib/wharf
  --config.stopsignal SIGTERM
)
for a in "${ANNOTATIONS[@]}"; do
  CONFIG_ARGS+=(--manifest.annotation "$a" --config.label "$a")
done
umoci config --image "$LAYOUT:$VERSION" "${CONFIG_ARGS[@]}"
for t in "${TAGS[@]}"; do
  [ "$t" = "$VERSION" ] || umoci tag --image "$LAYOUT:$VERSION" "$t"
done
umoci gc --layout "$LAYOUT"

# --- the SBOM, as an OCI 1.1 artifact whose subject is the image ------------------------------
(cd "$WORK" && "$BINARY" sbom "oci:wharf:$VERSION" --format cyclonedx) > "$WORK/sbom.cdx.json"
read -r IMAGE_DIGEST SBOM_DIGEST < <(python3 - "$LAYOUT" "$VERSION" "$WORK/sbom.cdx.json" "$CREATED" <<'EOF'
import hashlib, json, os, sys, uuid
layout, version, sbom_path, created = sys.argv[1:5]

def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest

index_path = os.path.join(layout, "index.json")
with open(index_path) as f:
    index = json.load(f)
image = next(m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == version)
with open(sbom_path) as f:
    doc = json.load(f)
# Reproducible: `wharf sbom` stamps the time of the run and a random serial number; the image's
# creation time and a UUID derived from the image digest take their place.
doc.setdefault("metadata", {})["timestamp"] = created
doc["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "oci-image:" + image["digest"]))
sbom = (json.dumps(doc, indent=2) + "\n").encode()
empty = b"{}"
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.cyclonedx+json",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": put(empty),
               "size": len(empty), "data": "e30="},
    "layers": [{"mediaType": "application/vnd.cyclonedx+json", "digest": put(sbom),
                "size": len(sbom),
                "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"}}],
    "subject": {"mediaType": image["mediaType"], "digest": image["digest"], "size": image["size"]},
    "annotations": {"org.opencontainers.image.created": created},
}
data = json.dumps(manifest, separators=(",", ":")).encode()
digest = put(data)
index["manifests"].append({
    "mediaType": manifest["mediaType"], "digest": digest, "size": len(data),
    "artifactType": manifest["artifactType"],
    "annotations": {"org.opencontainers.image.ref.name": version + ".sbom"},
})
with open(index_path, "w") as f:
    json.dump(index, f, separators=(",", ":"))
print(image["digest"], digest)
EOF
)
[ -n "$SBOM_DIGEST" ] || die "could not attach the SBOM to the layout"

mkdir -p "$(dirname "$OUT")"
mv "$LAYOUT" "$OUT"
LAYER_BYTES=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(l["size"] for l in m["layers"]))' \
  "$OUT/blobs/sha256/${IMAGE_DIGEST#sha256:}")
ELAPSED=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$START" "$(date +%s.%N)")
echo "build-image: $OUT: wharf $VERSION ($ARCH) $IMAGE_DIGEST, one layer of $LAYER_BYTES bytes compressed, tags: $VERSION ${TAGS[*]:-} (SBOM: $VERSION.sbom $SBOM_DIGEST), built in ${ELAPSED}s" >&2

# --- push, SBOM referrer, signature --------------------------------------------------------
if [ -n "$PUSH" ]; then
  # The repository: REF without its :tag or @digest.
  REPO_REF="${PUSH%%@*}"
  last="${REPO_REF##*/}"
  [[ "$last" == *:* ]] && REPO_REF="${REPO_REF%:*}"
  [[ "$PUSH" == */* ]] || die "--push needs HOST/REPO[:TAG], not $PUSH"
  HOST="${PUSH%%/*}"
  SKOPEO=(skopeo copy --quiet --preserve-digests)
  [ "$INSECURE" = 0 ] || SKOPEO+=(--dest-tls-verify=false)
  "${SKOPEO[@]}" --digestfile "$WORK/pushed" "oci:$OUT:$VERSION" "docker://$PUSH"
  [ "$(cat "$WORK/pushed")" = "$IMAGE_DIGEST" ] || die "pushed digest $(cat "$WORK/pushed") is not the layout's $IMAGE_DIGEST"
  "${SKOPEO[@]}" "oci:$OUT:$VERSION.sbom" "docker://$REPO_REF@$SBOM_DIGEST"
  echo "build-image: pushed $REPO_REF@$IMAGE_DIGEST ($PUSH) and its SBOM $SBOM_DIGEST as a referrer" >&2
  if [ -n "$SIGN_KEY" ]; then
    SIGN=("$BINARY" sign "$REPO_REF@$IMAGE_DIGEST" --key "$SIGN_KEY")
    [ "$INSECURE" = 0 ] || SIGN+=(--insecure-registry "$HOST")
    "${SIGN[@]}" >&2
    echo "build-image: signed $REPO_REF@$IMAGE_DIGEST" >&2
  fi
fi
echo "$IMAGE_DIGEST"
