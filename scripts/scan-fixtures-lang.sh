#!/usr/bin/env bash
# Real inputs for the language analysers' tests (crates/scan/tests/lang_*.rs): old, vulnerable
# releases installed by the real package managers, the versions the advisories in
# /work/shared/vulndata name. Downloads from PyPI and the npm registry, so the tests call it
# once; idempotent: a finished OUTDIR (marked by OUTDIR/.done-<version of this list>) is kept.
#
#   scripts/scan-fixtures-lang.sh OUTDIR
#
# OUTDIR/python        pip install --target (wheels only, no dependencies)
# OUTDIR/npm           npm install --prefix: node_modules + package.json + package-lock.json (v3)
# OUTDIR/npm-lock-v1   the same packages' lockfile in npm's v1 format (--lockfile-version 1)
# OUTDIR/npm-lock-v2   ... and in v2 (both v1 packages and v3 packages sections)
# OUTDIR/yarn          the yarn.lock yarn 1 (the npm package, installed in OUTDIR/yarn-tool)
#                      writes for the same tree (`yarn import` reads node_modules)
# OUTDIR/yarn-berry    the yarn.lock yarn 4 (@yarnpkg/cli-dist, in OUTDIR/yarn-berry-tool)
#                      resolves for the same package.json (`--mode=update-lockfile`: no install)
set -euo pipefail

OUT="${1:?usage: scan-fixtures-lang.sh OUTDIR}"
STAMP="$OUT/.done-6"
[ -e "$STAMP" ] && exit 0
mkdir -p "$OUT"
rm -f "$OUT"/.done-*

PYTHON_PKGS=(requests==2.19.0 urllib3==1.24.1 Django==3.2.0 Jinja2==2.10 Flask==0.12.2
  Werkzeug==0.15.0 idna==2.7 certifi==2018.4.16 PyJWT==1.5.0 sqlparse==0.4.1)
NPM_PKGS=(lodash@4.17.15 minimist@1.2.0 express@4.16.0 @babel/code-frame@7.0.0)
NPM_DEV_PKG=semver@5.7.0

rm -rf "$OUT/python" "$OUT/npm" "$OUT/npm-lock-v1" "$OUT/npm-lock-v2" "$OUT/yarn" "$OUT/yarn-tool" \
  "$OUT/yarn-berry" "$OUT/yarn-berry-tool"
PIP=(python3 -m pip)
[ -x /usr/bin/python3 ] && PIP=(/usr/bin/python3 -m pip)
"${PIP[@]}" install -q --disable-pip-version-check --no-input --no-deps --only-binary=:all: \
  --target "$OUT/python" "${PYTHON_PKGS[@]}" </dev/null
# pip --target also writes bin/ scripts; they are not packages.

NPM=(npm --no-audit --no-fund --loglevel=error)
"${NPM[@]}" install --save-exact --prefix "$OUT/npm" "${NPM_PKGS[@]}" </dev/null
# A development dependency: installed in node_modules, marked `dev` in the lockfile.
"${NPM[@]}" install --save-exact --save-dev --prefix "$OUT/npm" "$NPM_DEV_PKG" </dev/null
for v in 1 2; do
  mkdir -p "$OUT/npm-lock-v$v"
  cp "$OUT/npm/package.json" "$OUT/npm/package-lock.json" "$OUT/npm-lock-v$v/"
  "${NPM[@]}" install --prefix "$OUT/npm-lock-v$v" --package-lock-only --lockfile-version "$v" </dev/null
done
"${NPM[@]}" install --prefix "$OUT/yarn-tool" yarn@1.22.22 </dev/null
cp -r "$OUT/npm" "$OUT/yarn"
rm "$OUT/yarn/package-lock.json"
(cd "$OUT/yarn" && "$OUT/yarn-tool/node_modules/.bin/yarn" import --non-interactive --silent </dev/null)
rm -rf "$OUT/yarn/node_modules"
"${NPM[@]}" install --prefix "$OUT/yarn-berry-tool" @yarnpkg/cli-dist@4.5.3 </dev/null
mkdir -p "$OUT/yarn-berry"
cp "$OUT/npm/package.json" "$OUT/yarn-berry/"
printf 'npmRegistryServer: "https://registry.npmjs.org"\nenableTelemetry: false\nenableGlobalCache: false\n' \
  >"$OUT/yarn-berry/.yarnrc.yml"
(cd "$OUT/yarn-berry" && node "$OUT/yarn-berry-tool/node_modules/@yarnpkg/cli-dist/bin/yarn.js" \
  install --mode=update-lockfile </dev/null >/dev/null)
rm -rf "$OUT/yarn-berry/.yarn"
touch "$STAMP"
