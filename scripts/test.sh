#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every test
# of the workspace. Safe to run on a fresh Debian machine with rustup's cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi
# No system libraries are needed: plotters draws text with the embedded
# DejaVu Sans font, and polars/zstd build from source with the C compiler
# (gcc) that a Rust toolchain on Debian already needs for linking.
if ! command -v cc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -q && apt-get install -y -q gcc
    else
        echo "a C compiler (cc) is needed: apt-get install gcc" >&2
        exit 1
    fi
fi
cargo test --workspace --locked "$@"
