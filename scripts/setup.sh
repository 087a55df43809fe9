#!/usr/bin/env bash
# Installs what ciuic needs (Debian/Ubuntu packages, as root) and builds it into ./build.
# Safe to run again: packages already present are skipped, the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build ccache pkg-config python3 python3-matplotlib
          googletest libgtest-dev libgmock-dev libbenchmark-dev
          openmpi-bin libopenmpi-dev libgloo-dev iproute2 nftables
          # ibverbs, and the Soft-RoCE guest of tests/rdma-vm that runs it in CI
          libibverbs-dev rdma-core ibverbs-utils ibverbs-providers perftest
          qemu-system-x86 busybox-static cpio
          # the libFuzzer targets of scripts/sanitize.sh
          clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]} — run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The rdma-vm guest's kernel, fetched once into _build/rdma-vm (its tests skip without it).
tests/rdma-vm/run.sh --prepare || echo "setup: the rdma-vm tests will skip (see above)" >&2

build_type=${CIUIC_BUILD_TYPE:-RelWithDebInfo}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DCIUIC_WERROR=ON >/dev/null
cmake --build build -j "$(nproc)"
