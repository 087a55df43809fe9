// The same-node CUDA IPC kernel's launch: every collective of the IPC path, windowed or
// direct (ipc_kernels.h), for every datatype x op. The kernels themselves are in
// ipc_kernel.cuh, compiled one datatype per translation unit.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/ipc_kernel.cuh"
#include "cuda/ipc_kernels.h"

namespace ciuic::cuda {
namespace {

using ipc_detail::IpcKernel;
using ipc_detail::kernel_of;

// The kernel for the datatype and op; nullptr if either is not a ciuic value.
IpcKernel kernel_for(ciuic_datatype_t datatype, ciuic_op_t op) {
  switch (datatype) {
    case CIUIC_INT8: return kernel_of<CIUIC_INT8>(op);
    case CIUIC_UINT8: return kernel_of<CIUIC_UINT8>(op);
    case CIUIC_INT32: return kernel_of<CIUIC_INT32>(op);
    case CIUIC_UINT32: return kernel_of<CIUIC_UINT32>(op);
    case CIUIC_INT64: return kernel_of<CIUIC_INT64>(op);
    case CIUIC_UINT64: return kernel_of<CIUIC_UINT64>(op);
    case CIUIC_FLOAT16: return kernel_of<CIUIC_FLOAT16>(op);
    case CIUIC_BFLOAT16: return kernel_of<CIUIC_BFLOAT16>(op);
    case CIUIC_FLOAT32: return kernel_of<CIUIC_FLOAT32>(op);
    case CIUIC_FLOAT64: return kernel_of<CIUIC_FLOAT64>(op);
    case CIUIC_FLOAT8_E4M3: return kernel_of<CIUIC_FLOAT8_E4M3>(op);
    case CIUIC_FLOAT8_E5M2: return kernel_of<CIUIC_FLOAT8_E5M2>(op);
    default: return nullptr;
  }
}

}  // namespace

Status launch_ipc(const IpcLaunch& launch, cudaStream_t stream) {
  if (launch.blocks < 1 || launch.blocks > kIpcMaxBlocks || launch.nranks < 2 ||
      launch.nranks > kIpcMaxRanks)
    return internal_error("IPC kernel: " + std::to_string(launch.blocks) + " blocks for " +
                          std::to_string(launch.nranks) + " ranks");
  const IpcKernel kernel = kernel_for(launch.datatype, launch.op);
  if (kernel == nullptr)
    return invalid_argument("IPC kernel: datatype " + std::to_string(launch.datatype) + " op " +
                            std::to_string(launch.op));
  kernel<<<launch.blocks, kIpcThreads, 0, stream>>>(launch);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return internal_error(std::string("IPC kernel: launch failed: ") + cudaGetErrorName(e) + " (" +
                          cudaGetErrorString(e) + ")");
  return Status::Ok();
}

Status ipc_blocks_per_sm(int* out) {
  int fewest = 1 << 30;
  cudaError_t failure = cudaSuccess;
  for (int t = 0; t < CIUIC_NUM_DATATYPES; ++t)
    for (int op = 0; op < CIUIC_NUM_OPS; ++op) {
      const IpcKernel kernel =
          kernel_for(static_cast<ciuic_datatype_t>(t), static_cast<ciuic_op_t>(op));
      if (kernel == nullptr) continue;
      int blocks = 0;
      const cudaError_t e =
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kIpcThreads, 0);
      if (e != cudaSuccess) failure = e;
      fewest = std::min(fewest, blocks);
    }
  if (failure != cudaSuccess)
    return internal_error(
        std::string("IPC kernel: cudaOccupancyMaxActiveBlocksPerMultiprocessor: ") +
        cudaGetErrorName(failure));
  *out = fewest;
  return Status::Ok();
}

}  // namespace ciuic::cuda
