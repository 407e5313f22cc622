#!/usr/bin/env bash
# Grades one exercise, or lists them.
#
#   bash scripts/exercise.sh          list the exercises and their tasks
#   bash scripts/exercise.sh NAME     grade exercises/NAME: PASS, or NOT YET
#                                     with the failing lines and the hints
#
# Exit status: 0 solved, 1 not yet, 2 unknown exercise.
set -euo pipefail
cd "$(dirname "$0")/.."

# The task line of a starter: the first `//!` line, minus "TASK: ".
task_of() {
  sed -n '1{s|^//! *||; s|^TASK: *||; p; q}' "exercises/$1/src/starter.rs"
}

if [ $# -eq 0 ]; then
  echo "Exercises (grade one with: bash scripts/exercise.sh NAME):"
  for dir in exercises/*/; do
    name=$(basename "$dir")
    [ -f "exercises/$name/src/starter.rs" ] || continue
    printf '  %-24s %s\n' "$name" "$(task_of "$name")"
  done
  exit 0
fi

name=${1#ex-}
if [[ ! $name =~ ^[a-z0-9-]+$ ]] || [ ! -f "exercises/$name/src/starter.rs" ]; then
  echo "exercise.sh: no exercise named '$1' (run without arguments to list them)" >&2
  exit 2
fi

# Backtraces would bury the verdict; the conformance cases hold hundreds
# of sockets at once.
export RUST_BACKTRACE=0
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "grading $name (cargo test -p ex-$name --features grade) ..."
if cargo test -q -p "ex-$name" --features grade >"$log" 2>&1; then
  echo "PASS: $name is solved"
  exit 0
fi

echo "NOT YET:"
# Compile errors first: they hide everything else.
if grep -q '^error' "$log" && ! grep -q '^test result' "$log"; then
  grep -E -A6 '^error(\[E[0-9]+\])?:' "$log" | grep -v '^--$' | head -n 30 | sed 's/^/  /'
else
  # Failing conformance cases ("FAIL  name  detail") and the message of
  # each failed assertion (the line after "panicked at"); passes left out.
  awk '
    grab { grab = 0; if ($0 !~ /^(pass |FAIL |UNEXPECTED PASS |$)/ && !seen[$0]++) print }
    /panicked at/ { grab = 1; next }
    /^(FAIL|UNEXPECTED PASS) / && !seen[$0]++ { print }
  ' "$log" | head -n 20 | sed 's/^/  /'
  grep -E '^    [a-z_]+$' "$log" | sed 's/^    /  failed test: /' || true
fi
echo
cat "exercises/$name/HINT.md"
exit 1
