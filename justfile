# Thin recipes over cargo, echo-bench and scripts/: no logic lives here.
# `just --list` shows them.

# Every built model through the benchmark scenarios (results/<timestamp>/)
bench-all *ARGS:
    cargo run --release -p echo-bench -- all {{ARGS}}

# The whole test suite
test:
    cargo test --workspace

# Start one model in the foreground, e.g. `just serve epoll --addr 127.0.0.1:7000`
serve MODEL *ARGS:
    cargo run --release -p echo-{{MODEL}} -- {{ARGS}}

# The conformance suite against one model
check MODEL:
    cargo build --release -p echo-bench -p echo-{{MODEL}}
    target/release/echo-bench check {{MODEL}}

# One model under load, with server CPU, context switches and memory
run MODEL *ARGS:
    cargo build --release -p echo-bench -p echo-{{MODEL}}
    target/release/echo-bench run {{MODEL}} {{ARGS}}

# Grade one exercise (no NAME: list them)
exercise NAME="":
    bash scripts/exercise.sh {{NAME}}
