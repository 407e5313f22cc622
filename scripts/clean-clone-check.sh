#!/usr/bin/env bash
# Runs .ci/run on a fresh clone of the committed tree (HEAD), the way CI
# sees it: nothing uncommitted, no target directory, no results.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
git clone -q . "$dir/clone"
cd "$dir/clone"
bash .ci/run
