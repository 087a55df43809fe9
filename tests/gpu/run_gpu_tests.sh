#!/usr/bin/env bash
# Builds ciuic with CUDA and runs the GPU tests on a GPU machine, in one command:
#
#   tests/gpu/run_gpu_tests.sh [PHASES]      PHASES: any of "tests ipc torch bench" (default tests)
#
# tests: tests/gpu's programs (kernels against the CPU kernels, stream semantics, every
#        collective x datatype x op x size on device buffers with 2 and 4 ranks on one GPU
#        as threads, through CUDA IPC and through staging, a host-only process that never
#        loads libcuda);
# ipc:   tests/gpu/ipc_test.cc, same-node CUDA IPC with ranks as processes (2 and 4 on one
#        GPU under MPS): every IPC collective in each mode, and the same ranks forced onto
#        staging by CIUIC_HOSTID;
# torch: tests/gpu/torch_capi_check.py, ciuic's C API through ctypes on CUDA tensors beside
#        torch.distributed's NCCL, two processes on one GPU;
# bench: ciuic-perf allreduce -d cuda, 2 ranks on one GPU under MPS, 8 B .. 256 MiB, with
#        the GPU's device-to-device copy bandwidth and the host-memory run beside it.
#
# SRC (default: this checkout) is the source tree, BUILD the build folder, OUT where logs go;
# PREBUILT=1 takes the programs already in BUILD (tests/gpu/, perftests/) without building.
# Prints one summary line per program; exits non-zero if any failed.
set -u
SRC=${SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-/tmp/ciuic-build-cuda}
OUT=${OUT:-/tmp/ciuic-gpu-out}
PHASES=${1:-tests}
mkdir -p "$OUT"
export PATH=/opt/torch/.venv/bin:/usr/local/cuda/bin:$PATH
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# Ranks as threads share one context: more hardware queues than streams in flight, so one
# rank's held stream never sits in front of another's (docs/gpu.md).
export CIUIC_SOCKET_IFNAME=lo CUDA_DEVICE_MAX_CONNECTIONS=32 CIUIC_TIMEOUT_MS=${CIUIC_TIMEOUT_MS:-30000}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
t0=$(date +%s)
if [ "${PREBUILT:-0}" != 1 ]; then
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCIUIC_CUDA=ON \
    -DCIUIC_BUILD_TESTS=OFF -DCIUIC_BUILD_BENCHMARKS=OFF >"$OUT/configure.log" 2>&1 \
    || { tail -30 "$OUT/configure.log"; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" --target ciuic ciuic-perf gpu_host_only_test gpu_kernels_test \
    gpu_stream_test gpu_collectives_test gpu_ipc_test >"$OUT/build.log" 2>&1 \
    || { grep -E "error|FAILED" "$OUT/build.log" | head -40; exit 1; }
  echo "build: $(($(date +%s) - t0)) s"
fi
# Several processes on one GPU share it through MPS (without it they take turns).
mps_start() {
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && echo "MPS started"
}
mps_stop() { echo quit | nvidia-cuda-mps-control; sleep 2; }  # quit returns before it ends

failed=0
# run SECONDS NAME command...: the program's summary lines, its exit code and time.
run() {
  local limit=$1 name=$2
  shift 2
  local start rc
  start=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  grep -aE "checks passed|^SKIP|^FAIL|: done|cases$|matched|mismatch|^path" "$OUT/$name.log" | cut -c1-240 | head -40
  echo "[$name: exit $rc, $(($(date +%s) - start)) s]"
  [ "$rc" -eq 0 ] || { failed=$((failed + 1)); tail -5 "$OUT/$name.log"; }
}

for phase in $PHASES; do
  case $phase in
    tests)
      run 30 host_only "$BUILD/tests/gpu/gpu_host_only_test"
      run 60 kernels "$BUILD/tests/gpu/gpu_kernels_test"
      run 60 stream "$BUILD/tests/gpu/gpu_stream_test"
      run 90 collectives2 "$BUILD/tests/gpu/gpu_collectives_test" 2
      run 120 collectives4 "$BUILD/tests/gpu/gpu_collectives_test" 4
      ;;
    ipc)
      # Processes, not threads: the hardware-queue setting above is for ranks sharing a
      # context, and MPS serves the processes' streams itself.
      mps_start
      run 120 ipc2 env -u CUDA_DEVICE_MAX_CONNECTIONS "$BUILD/tests/gpu/gpu_ipc_test" 2
      mps_stop
      mps_start
      run 150 ipc4 env -u CUDA_DEVICE_MAX_CONNECTIONS "$BUILD/tests/gpu/gpu_ipc_test" 4
      mps_stop
      ;;
    torch)
      export CIUIC_LIB="$BUILD/libciuic.so"
      run 150 torch timeout 140 torchrun --nproc-per-node 2 \
        --master-port $((29000 + RANDOM % 1000)) "$SRC/tests/gpu/torch_capi_check.py"
      ;;
    bench)
      # Two processes on one GPU: same-node CUDA IPC (the default), then the same ranks on
      # the staging path, then host memory; the GPU's own copy bandwidth is printed first.
      mps_start
      timeout 120 "$BUILD/perftests/ciuic-perf" allreduce -N 2 -d cuda -b 8 -e 256M -f 4 -n 20 -w 5 \
        2>&1 | tee "$OUT/bench-cuda.log" | grep -vE "^$"
      CIUIC_CUDA_IPC=off timeout 60 "$BUILD/perftests/ciuic-perf" allreduce -N 2 -d cuda -b 8 -e 16M -f 8 \
        -n 5 -w 2 2>&1 | tee "$OUT/bench-staging.log" | grep -vE "^$"
      timeout 60 "$BUILD/perftests/ciuic-perf" allreduce -N 2 -d host -b 8 -e 64M -f 8 -n 5 -w 2 \
        2>&1 | tee "$OUT/bench-host.log" | grep -vE "^$"
      mps_stop
      ;;
  esac
done
echo "GPU tests: $failed program(s) failed"
exit $((failed > 0))
