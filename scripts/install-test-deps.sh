#!/usr/bin/env bash
# Installs the Debian packages that Wharf's end-to-end tests drive (crates/wharf/tests/e2e_*.rs):
# real clients (skopeo, podman, containerd's ctr), CNCF Distribution as a peer and baseline,
# umoci + busybox-static to build test images offline, wrk and curl for benchmarks and by-hand
# checks. Safe to run again; non-interactive; needs root (or sudo).
#
#   scripts/install-test-deps.sh            install what is missing
#   FORCE_APT=1 scripts/install-test-deps.sh  always run apt-get update + install
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
)

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
for tool in skopeo podman containerd ctr docker-registry umoci busybox wrk curl openssl newuidmap kill; do
  command -v "$tool" >/dev/null || { echo "install-test-deps: $tool is still missing" >&2; exit 1; }
done
echo "install-test-deps: ok ($(skopeo --version), $(podman --version), $(containerd --version | cut -d' ' -f3), $(docker-registry --version | cut -d' ' -f3), $(umoci --version))"
