#!/usr/bin/env bash
# Checks the invariants ARCHITECTURE.md states as absences:
#   1. no model crate depends on another model crate;
#   2. echo-protocol holds no event loop;
#   3. no exercise grades itself without the `grade` feature (so a fresh
#      clone's `cargo test --workspace` never runs an unsolved starter);
#   4. no conformance case or fault without a broken server that fails it;
#   5. nothing depends on test-servers;
#   6. one /proc walker: only echo-conformance's tree.rs builds /proc/<pid> paths.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
meta=$(cargo metadata --format-version 1 --no-deps)

# 1. Every echo-* crate other than the shared ones may depend on
#    echo-protocol (and on echo-conformance for tests), never on a model.
shared='^(echo-protocol|echo-conformance|echo-bench)$'
while read -r pkg dep; do
  if [[ ! $pkg =~ $shared && $dep == echo-* && ! $dep =~ $shared ]]; then
    echo "✘ model crate $pkg depends on model crate $dep"
    fail=1
  fi
done < <(python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for d in p["dependencies"]:
        print(p["name"], d["name"])' <<<"$meta")

# 2. echo-protocol: no readiness or async machinery among its dependencies,
#    and no multiplexing call in its source.
deps=$(python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "echo-protocol":
        print(" ".join(d["name"] for d in p["dependencies"]))' <<<"$meta")
for banned in mio tokio io-uring polling; do
  if [[ " $deps " == *" $banned "* ]]; then
    echo "✘ echo-protocol depends on $banned: it must hold no event loop"
    fail=1
  fi
done
# (comment lines are skipped: the docs may name the calls a model uses)
if grep -rnE '\b(epoll|Epoll|poll\(|select\(|PollFd)' crates/echo-protocol/src | grep -vE '^[^:]+:[0-9]+:\s*//'; then
  echo "✘ echo-protocol's source multiplexes sockets: it must hold no event loop"
  fail=1
fi

# 3. Every grading test file of an exercise is gated on the grade feature.
for t in exercises/*/tests/*.rs; do
  [ -e "$t" ] || continue
  if ! grep -q '^#!\[cfg(feature = "grade")\]' "$t"; then
    echo "✘ $t runs without the grade feature: an unsolved starter would turn cargo test red"
    fail=1
  fi
done

# 4. Every case and fault name is the intended catch of a broken server.
names=$(python3 - <<'PY'
import re
src = open("crates/echo-conformance/src/lib.rs").read()
for const in ("CASES", "FAULTS"):
    body = re.search(r"pub const %s: &\[&str\] = &\[(.*?)\];" % const, src, re.S).group(1)
    print("\n".join(re.findall(r'"([a-z0-9-]+)"', body)))
PY
)
for name in $names; do
  # The catch tests name each case or fault they expect to fail, quoted.
  if ! grep -rqF "\"$name\"" crates/test-servers/tests/; then
    echo "✘ no broken server in crates/test-servers/tests is run against '$name': the check is not shown able to fail"
    fail=1
  fi
done

# 5. Nothing links the test servers.
if python3 -c '
import json, sys
sys.exit(any(d["name"] == "test-servers" for p in json.load(sys.stdin)["packages"] for d in p["dependencies"]))' <<<"$meta"; then :; else
  echo "✘ a crate depends on test-servers: its binaries are for its own tests"
  fail=1
fi

# 6. One /proc walker for the suite and the harness.
if grep -rnE 'format!\("/proc/\{' crates/echo-conformance/src crates/echo-bench/src | grep -v 'crates/echo-conformance/src/tree.rs'; then
  echo "✘ /proc/<pid> read outside echo-conformance's tree.rs: one walker serves the suite and the harness"
  fail=1
fi

if [ $fail -eq 0 ]; then
  echo "✔ invariants hold: models independent, echo-protocol without an event loop, exercises graded only on request, every check shown able to fail, one /proc walker"
fi
exit $fail
