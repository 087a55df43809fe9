// CUDA kernels ciuic launches (kernels.cu, built by nvcc in CUDA builds only).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/status.h"
#include "ciuic/ciuic.h"

typedef struct CUstream_st* cudaStream_t;

namespace ciuic::cuda {

inline constexpr int kMaxReduceSources = 8;

// dst[i] = srcs[0][i] op srcs[1][i] op ... (nsrc in 1..kMaxReduceSources), on `stream`.
// float16 and bfloat16 accumulate in float and round once (to nearest even), so with two
// sources the result is bit for bit the CPU kernels' (src/reduce); integers wrap. dst may
// be one of the sources. CIUIC_AVG sums here; launch_average divides.
Status launch_reduce(void* dst, const void* const* srcs, int nsrc, size_t count,
                     ciuic_datatype_t datatype, ciuic_op_t op, cudaStream_t stream);
// data[i] /= nranks, as reduce::finish_average does it.
Status launch_average(void* data, size_t count, ciuic_datatype_t datatype, int nranks,
                      cudaStream_t stream);
// Holds `stream` until (int32_t)(*flag - value) >= 0: the fallback for drivers without
// stream memory operations. `flag` is mapped pinned host memory (its device address).
Status launch_wait_value(cudaStream_t stream, const volatile uint32_t* flag, uint32_t value);

}  // namespace ciuic::cuda
