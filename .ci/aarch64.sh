#!/usr/bin/env bash
# The README's test command for aarch64 (ARM64) Linux, cross-built here and run under qemu's
# user-mode emulation: the check that ARM builds compile and pass (the x86-64 kernels are
# reported as ignored there; matmul runs `gemm`'s NEON kernels). Not part of `.ci/run`: it needs
# the aarch64 standard library from rustup, and takes ~10 minutes to build and ~12 to run on
# 2 cores. Run by hand, as root on a Debian machine: `.ci/aarch64.sh` (extra arguments go to
# `cargo test`, e.g. `-p frostnet --lib`).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  apt-get install -y gcc-aarch64-linux-gnu qemu-user >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

# Tests that start the CLI run an aarch64 binary: let the kernel hand those to qemu.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
if [ "$#" -eq 0 ]; then
  set -- --workspace --all-features
fi
cargo test --target "$target" "$@"
