#!/usr/bin/env bash
# Units before/after a change of src/workspace/units.rs, on the same files (BENCHMARKS.md,
# "Units"). Usage: scripts/units_compare.sh [--base COMMIT] [--targets] FILES...
# Default base: 652410e, the last commit before issue 15's splitter.
set -euo pipefail
cd "$(dirname "$0")/.."
base=652410e
if [[ "${1:-}" == --base ]]; then base=$2; shift 2; fi
git show "$base:src/workspace/units.rs" > scripts/units_compare/src/old_units.rs
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/pema-units-compare}
cargo build --quiet --release --manifest-path scripts/units_compare/Cargo.toml
files=()
for f in "$@"; do [[ $f == --* ]] || files+=("$(realpath "$f")"); done
flags=()
for f in "$@"; do [[ $f == --* ]] && flags+=("$f"); done
"$CARGO_TARGET_DIR/release/units-compare" "${flags[@]}" "${files[@]}"
