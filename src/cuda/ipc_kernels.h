// The kernel of the same-node CUDA IPC path (ipc_kernels.cu; docs/gpu.md, "Same-node CUDA
// IPC"). One launch per collective on each rank's stream; the ranks' kernels meet through
// flags in each other's device memory, so no host thread waits for the device.
//
// Two modes:
//  - windowed: every rank copies its input, a chunk at a time, into its own window (device
//    memory mapped by every peer at setup), the ranks meet, and each rank reads what it
//    needs from the peers' windows into its own output. No per-call exchange: small
//    messages need nothing from the host.
//  - direct: the ranks exchanged their buffers' addresses (the engine's thread, through the
//    communicator) and the kernel reads the peers' inputs and writes the peers' outputs in
//    place: rank r reduces slice r of every input and writes it into every output.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/status.h"
#include "ciuic/ciuic.h"

typedef struct CUstream_st* cudaStream_t;

namespace ciuic::cuda {

inline constexpr int kIpcMaxRanks = 8;     // ranks on one node the kernel serves
inline constexpr int kIpcMaxBlocks = 128;  // blocks per launch (flags are per block)
inline constexpr int kIpcThreads = 512;
// Element counts (chunks, slices, block portions) are multiples of this, so that every
// boundary is 16-byte aligned for every datatype.
inline constexpr size_t kIpcAlign = 64;

enum class IpcCollective : int32_t { kAllreduce, kReduce, kReduceScatter, kAllgather, kBroadcast };

enum IpcMode : uint32_t {
  kIpcModeUnset = 0,
  kIpcModeWindowed = 1,
  kIpcModeDirect = 2,
  kIpcModeSkip = 3,  // the exchange failed: the kernel does nothing (the error is reported)
};

// What the engine's thread writes for a direct-mode operation once the ranks have exchanged
// their buffers (mapped pinned host memory; the stream waits for it before the kernel).
struct IpcDescriptor {
  uint32_t mode = kIpcModeUnset;
  uint32_t pad = 0;
  uint64_t in[kIpcMaxRanks] = {};   // each rank's input, as an address in this process
  uint64_t out[kIpcMaxRanks] = {};  // each rank's output (0: none)
};

// Mapped pinned host words shared by the host and the kernels of one engine.
struct IpcHostWords {
  uint32_t abort = 0;  // set by ciuic_comm_abort: waiting kernels give up
  uint32_t error = 0;  // set by the first kernel that gave up: kind << 8 | peer
};
inline constexpr uint32_t kIpcErrorTimeout = 1;  // a peer's kernel did not arrive in time
inline constexpr uint32_t kIpcErrorAborted = 2;  // abort, or an earlier failure

// One launch. Pointers are device addresses in this process.
struct IpcLaunch {
  IpcCollective collective = IpcCollective::kAllreduce;
  ciuic_datatype_t datatype = CIUIC_FLOAT32;
  ciuic_op_t op = CIUIC_SUM;
  int rank = 0;
  int nranks = 1;
  int root = 0;
  size_t count = 0;          // the API's count
  const void* in = nullptr;  // this rank's input (nullptr: none, a broadcast's non-root)
  void* out = nullptr;       // this rank's output (nullptr: none, a reduce's non-root)
  // windowed mode: each rank's window pair for this operation (two slots of slot_bytes)
  char* windows[kIpcMaxRanks] = {};
  size_t slot_bytes = 0;
  size_t chunk = 0;  // elements per row of a slot (a multiple of kIpcAlign)
  // direct mode: the descriptor (nullptr: the operation is windowed)
  const IpcDescriptor* descriptor = nullptr;
  // meeting: flags[block * kIpcMaxRanks + peer] in each rank's memory
  uint64_t* flags = nullptr;
  uint64_t* peer_flags[kIpcMaxRanks] = {};
  uint64_t base = 0;  // the operation's flag values are base + 1, base + 2, ...
  IpcHostWords* host = nullptr;
  uint64_t timeout_ns = 0;
  int blocks = 1;
};

Status launch_ipc(const IpcLaunch& launch, cudaStream_t stream);
// The fewest blocks of the IPC kernel that fit on one multiprocessor, over every variant.
Status ipc_blocks_per_sm(int* out);

}  // namespace ciuic::cuda
