#!/usr/bin/env bash
# One call on a GPU machine's host (device tool; 16–32 cores): ciuic's all-reduce on host
# memory beside Open MPI, on the same wire — shared memory (ciuic's shm transport, Open
# MPI's vader BTL) and loopback TCP — at 2, 4 and 8 ranks, with compare.py's tables.
# The 2-core development machine cannot hold 8 ranks, and its figures are noisy.
#
#   perftests/compare/device_host_path.sh [WIRES] [RANKS]   # default "shm tcp" "2,4,8"
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PATH=/opt/torch/.venv/bin:$PATH
wires=${1:-"shm tcp"} ranks=${2:-2,4,8}
echo "host: $(nproc) cores, $(uname -r), $(mpirun --version 2>/dev/null | head -1)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCIUIC_BUILD_TESTS=OFF \
  -DCIUIC_BUILD_BENCHMARKS=OFF -DCIUIC_CUDA=OFF >/dev/null &&
  cmake --build build -j "$(nproc)" >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
for wire in $wires; do
  echo "=== wire $wire"
  python3 perftests/compare/compare.py --build-dir build --wire "$wire" --libraries ciuic,mpi \
    --collectives allreduce --ranks "$ranks" -b 8 -e 128M -f 8 -n 20 -w 5 \
    --out-dir "$OUT/compare-$wire" --timeout 200 2>&1 | grep -v "^skipped: plot"
done
