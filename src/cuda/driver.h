// The few CUDA driver calls ciuic makes to tell CUDA memory from host memory, found in
// libcuda.so.1 only once the process has loaded it. A process that never touched CUDA has
// no CUDA memory: then every buffer is host memory and ciuic never loads or initialises
// CUDA itself. This file needs no CUDA headers, so the CPU-only build has it too and can
// say "this build has no CUDA" instead of crashing on a device pointer.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace ciuic::cuda {

// The driver ABI values used here (cuda.h), declared so the CPU-only build needs no CUDA.
using CuResult = int;
using CuDevicePtr = unsigned long long;
using CuStream = void*;

struct DriverApi {
  CuResult (*pointer_get_attributes)(unsigned num, int* attributes, void** data,
                                     CuDevicePtr ptr) = nullptr;
  CuResult (*get_error_string)(CuResult, const char**) = nullptr;
  // Stream memory operations (CUDA 11.7+ drivers): null where the driver lacks them.
  CuResult (*stream_wait_value32)(CuStream, CuDevicePtr, uint32_t value, unsigned flags) = nullptr;
};

// The driver's table while the process has libcuda.so.1 loaded, else nullptr (checked
// again on the next call: the application may initialise CUDA at any time).
const DriverApi* loaded_driver();

// "CUDA_ERROR_INVALID_VALUE (invalid argument)" for a driver result.
std::string driver_error(const DriverApi& api, CuResult result);

enum class Memory { kHost, kPinned, kDevice, kManaged };
const char* memory_name(Memory m);  // "pageable host", "pinned host", "device", "managed"

struct PointerInfo {
  Memory memory = Memory::kHost;
  int device = -1;  // the GPU of device and managed memory (and of registered host memory)
};

// What `ptr` is. Host memory unknown to CUDA (or any pointer while CUDA is not loaded)
// is kHost.
Status classify(const void* ptr, PointerInfo* out);
// The same with the driver table the caller already has (loaded_driver(), maybe nullptr):
// one look at the loader serves every buffer of a call.
Status classify(const DriverApi* api, const void* ptr, PointerInfo* out);

// The allocation `ptr` lies in, for CUDA IPC: its base, the driver's process-wide unique
// id of it (never reused, unlike addresses), and whether cudaIpcGetMemHandle can export it
// (memory from cudaMalloc; not managed, pinned host, pool or VMM allocations).
struct AllocationInfo {
  uint64_t base = 0;
  uint64_t buffer_id = 0;
  bool legacy_ipc = false;
};
Status allocation_of(const void* ptr, AllocationInfo* out);

}  // namespace ciuic::cuda
