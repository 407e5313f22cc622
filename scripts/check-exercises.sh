#!/usr/bin/env bash
# Proves every exercise both ways, as CI does: its starter compiles and
# FAILS its grade, its reference solution PASSES it, and both are clippy
# clean. One line per exercise and direction; exit 1 if any is wrong.
#
#   bash scripts/check-exercises.sh            every exercise
#   bash scripts/check-exercises.sh NAME...    only these
#
# A failing starter mostly waits (for a bounded deadline that never comes
# true), so the grades run in parallel, JOBS at a time (default 3), after
# the builds, which run one at a time. All starters run first, then all
# solutions: a grade finds its server through CARGO_BIN_EXE_<name>, the one
# uplifted path per binary, which the other build overwrites.
set -euo pipefail
cd "$(dirname "$0")/.."

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export RUST_BACKTRACE=0
jobs_max=${JOBS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

# One failing line; with a log file, the end of it under the line.
bad() {
  echo "✘ $1"
  if [ -n "${2:-}" ]; then
    sed 's/^/    /' "$2" | tail -n 15
  fi
  fail=1
}

names=()
if [ $# -gt 0 ]; then
  names=("$@")
else
  for dir in exercises/*/; do
    name=$(basename "$dir")
    [ -f "exercises/$name/src/starter.rs" ] && names+=("$name")
  done
fi

# Builds exercise $1's tests with features $2 and lists the test
# executables in $work/$1.$3.exe; false if it does not compile.
build() {
  local name=$1 features=$2 mode=$3
  cargo test -q -p "ex-$name" --features "$features" --no-run --message-format=json \
    2>"$work/$name.$mode.build" >"$work/$name.$mode.json" || return 1
  python3 - "$work/$name.$mode.json" >"$work/$name.$mode.exe" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["profile"]["test"] and msg.get("executable"):
        print(msg["executable"])
PY
}

# Runs every test executable of exercise $1 (mode $2) from the exercise's
# folder, as cargo test would; the status is what the grade says.
grade() {
  local name=$1 mode=$2 status=0 exe
  while read -r exe; do
    (cd "exercises/$name" && timeout 600 "$exe") >>"$work/$name.$mode.log" 2>&1 || status=1
  done <"$work/$name.$mode.exe"
  echo "$status" >"$work/$name.$mode.status"
}

# Builds every exercise in one mode, then grades them in parallel.
run_mode() {
  local features=$1 mode=$2 name running=()
  for name in "${names[@]}"; do
    if build "$name" "$features" "$mode"; then
      running+=("$name")
    else
      echo "build-failed" >"$work/$name.$mode.status"
    fi
  done
  for name in "${running[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
    grade "$name" "$mode" &
  done
  wait
}

run_mode grade starter
run_mode grade,solution solution

for name in "${names[@]}"; do
  case $(cat "$work/$name.starter.status") in
    build-failed) bad "$name: starter does not compile" "$work/$name.starter.build" ;;
    0) bad "$name: starter of $name passes its tests" ;;
    *) echo "✔ $name: starter fails its grade" ;;
  esac
  case $(cat "$work/$name.solution.status") in
    build-failed) bad "$name: solution does not compile" "$work/$name.solution.build" ;;
    0) echo "✔ $name: solution passes its grade" ;;
    *) bad "$name: solution fails its grade" "$work/$name.solution.log" ;;
  esac
  if cargo clippy -q -p "ex-$name" --all-targets --features grade -- -D warnings >"$work/clippy" 2>&1 &&
     cargo clippy -q -p "ex-$name" --all-targets --features grade,solution -- -D warnings >>"$work/clippy" 2>&1; then
    echo "✔ $name: starter and solution are clippy clean"
  else
    bad "$name: clippy warnings" "$work/clippy"
  fi
done

exit $fail
