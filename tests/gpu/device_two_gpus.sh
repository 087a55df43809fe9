#!/usr/bin/env bash
# One call on a 2-GPU machine (device tool): builds ciuic's plugin and nccl-tests there,
# then runs what issue-level checks need, writing logs under $OUT.
#
#   tests/gpu/device_two_gpus.sh nccl   # nccl-tests sweep (Ring, Tree), speed, mpirun
#   tests/gpu/device_two_gpus.sh torch  # nccl-tests under mpirun, PyTorch checks, DDP step times
#   tests/gpu/device_two_gpus.sh speed  # the plugin's I/O settings beside Socket and 4 x 4,
#                                       # busbw and DDP step time, nothing else (one short call)
#
# Expects nccl-tests' source in _build/nccl-tests (carried along) and torch in
# /opt/torch/.venv (the GPU machines' image).
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PATH=/opt/torch/.venv/bin:$PATH
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name --format=csv,noheader | head -2
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCIUIC_BUILD_TESTS=OFF \
  -DCIUIC_BUILD_BENCHMARKS=OFF >/dev/null && cmake --build build -j 32 >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
build_nccl_tests() {
  [ -x _build/nccl-tests/build/all_reduce_perf ] || (cd _build/nccl-tests && make -j32 MPI=1 \
    MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi CUDA_HOME=/usr/local/cuda NCCL_HOME=/usr \
    NVCC_GENCODE=-gencode=arch=compute_90,code=sm_90 >"$OUT/nccl-tests-build.log" 2>&1) \
    || { tail -30 "$OUT/nccl-tests-build.log"; exit 1; }
}
# trun "<NAME=value ...>" script args...: two ranks under torchrun with that environment
trun() {
  local vars=$1
  shift
  env $vars timeout 300 torchrun --nproc-per-node 2 --master-port $((29000 + RANDOM % 1000)) "$@"
}
PLUGIN="NCCL_NET_PLUGIN=ciuic NCCL_NET=ciuic CIUIC_SOCKET_IFNAME=lo NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1"
SOCK="NCCL_NET_PLUGIN=none NCCL_NET=Socket NCCL_SOCKET_IFNAME=lo NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1"
case ${1:-nccl} in
  speed)
    build_nccl_tests
    PHASES=${PHASES:-"variants"} NCCL_TESTS_BUILD=$PWD/_build/nccl-tests/build \
      tests/gpu/nccl_plugin_two_gpus.sh "$OUT/nccl"
    export LD_LIBRARY_PATH=$PWD/build/plugins/nccl:${LD_LIBRARY_PATH:-}
    trun "$PLUGIN" perftests/gpu/ddp_step.py --label ciuic 2>&1 | grep -E "DDP|Error|error" | head -5
    trun "$PLUGIN CIUIC_TCP_SOCKETS=8 CIUIC_TCP_THREADS=7" perftests/gpu/ddp_step.py --label ciuic-8x7 2>&1 | grep DDP
    trun "$SOCK NCCL_SOCKET_NTHREADS=4 NCCL_NSOCKS_PERTHREAD=4" perftests/gpu/ddp_step.py --label socket4x4 2>&1 | grep DDP
    ;;
  nccl)
    (cd _build/nccl-tests && make -j32 MPI=1 MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi \
       CUDA_HOME=/usr/local/cuda NCCL_HOME=/usr \
       NVCC_GENCODE=-gencode=arch=compute_90,code=sm_90 >"$OUT/nccl-tests-build.log" 2>&1) \
      || { tail -30 "$OUT/nccl-tests-build.log"; exit 1; }
    echo "=== loopback TCP ceiling (ciuic-perf transport bw, 2 ranks)"
    for threads in 0 3 7; do
      CIUIC_SOCKET_IFNAME=lo CIUIC_TCP_THREADS=$threads CIUIC_TCP_SOCKETS=8 \
        timeout 60 build/perftests/ciuic-perf transport bw -N 2 -b 64K -e 128M -f 8 2>&1 \
        | sed "s/^/threads=$threads /" | grep -E "^threads=[0-9] +[0-9]"
    done
    PHASES=${PHASES:-"sweep speed"} NCCL_TESTS_BUILD=$PWD/_build/nccl-tests/build \
      tests/gpu/nccl_plugin_two_gpus.sh "$OUT/nccl"
    ;;
  torch)
    build_nccl_tests
    PHASES=${PHASES:-"variants mpi"} NCCL_TESTS_BUILD=$PWD/_build/nccl-tests/build tests/gpu/nccl_plugin_two_gpus.sh "$OUT/nccl-mpi"
    export LD_LIBRARY_PATH=$PWD/build/plugins/nccl:${LD_LIBRARY_PATH:-}
    trun "$PLUGIN NCCL_DEBUG=INFO" tests/gpu/torch_plugin_check.py 2>&1 | grep -E "rank [01]:|via NET/" | sed 's/.*\(via NET\/[A-Za-z]*\).*/\1/' | sort | uniq -c
    trun NCCL_NET_PLUGIN=none perftests/gpu/ddp_step.py --label compute-only --compute-only 2>&1 | grep DDP
    trun NCCL_NET_PLUGIN=none perftests/gpu/ddp_step.py --label nvlink 2>&1 | grep DDP
    trun "$PLUGIN" perftests/gpu/ddp_step.py --label ciuic 2>&1 | grep -E "DDP|Error|error" | head -5
    trun "$PLUGIN CIUIC_TCP_SOCKETS=8 CIUIC_TCP_THREADS=7" perftests/gpu/ddp_step.py --label ciuic-8x7 2>&1 | grep DDP
    trun "$SOCK" perftests/gpu/ddp_step.py --label socket 2>&1 | grep DDP
    trun "$SOCK NCCL_SOCKET_NTHREADS=4 NCCL_NSOCKS_PERTHREAD=4" perftests/gpu/ddp_step.py --label socket4x4 2>&1 | grep DDP
    ;;
esac
