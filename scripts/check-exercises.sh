#!/usr/bin/env bash
# Proves every exercise both ways, as CI does: its starter compiles and
# FAILS its grade, its reference solution PASSES it, and both are clippy
# clean. One line per exercise and direction; exit 1 if any is wrong.
set -euo pipefail
cd "$(dirname "$0")/.."

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail=0

# One failing line; with "log", the end of the cargo output under it.
bad() {
  echo "✘ $1"
  if [ "${2:-}" = log ]; then
    sed 's/^/    /' "$log" | tail -n 15
  fi
  fail=1
}

for dir in exercises/*/; do
  name=$(basename "$dir")
  [ -f "exercises/$name/src/starter.rs" ] || continue
  pkg="ex-$name"

  # The starter must compile: a student starts from code that runs.
  if ! cargo test -q -p "$pkg" --features grade --no-run >"$log" 2>&1; then
    bad "$name: starter does not compile" log
  elif cargo test -q -p "$pkg" --features grade >"$log" 2>&1; then
    bad "$name: starter of $name passes its tests"
  else
    echo "✔ $name: starter fails its grade"
  fi

  if cargo test -q -p "$pkg" --features grade,solution >"$log" 2>&1; then
    echo "✔ $name: solution passes its grade"
  else
    bad "$name: solution fails its grade" log
  fi

  if cargo clippy -q -p "$pkg" --all-targets --features grade -- -D warnings >"$log" 2>&1 &&
     cargo clippy -q -p "$pkg" --all-targets --features grade,solution -- -D warnings >>"$log" 2>&1; then
    echo "✔ $name: starter and solution are clippy clean"
  else
    bad "$name: clippy warnings" log
  fi
done

exit $fail
