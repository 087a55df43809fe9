// Same-node CUDA IPC (CUDA builds): what the ranks of one communicator share when they all
// sit on one node — each rank's device memory for meeting flags and windows, mapped by every
// peer, and the peers' buffers mapped for direct operations. docs/gpu.md has the design;
// the stream engine (engine.h, engine_ipc.cc) decides when to use it and enqueues the
// kernel (ipc_kernels.h).
#pragma once

#if CIUIC_HAVE_CUDA

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cuda/ipc_kernels.h"

namespace ciuic::core {
class Communicator;
}

namespace ciuic::cuda {

struct DeviceOp;

// One buffer of one rank, as the rank describes it to its peers for a direct operation.
struct IpcBuffer {
  uint64_t address = 0;    // in the owner's process (0: the rank has no such buffer)
  uint64_t buffer_id = 0;  // the owner's allocation id; 0: no handle (cannot be exported)
  uint64_t offset = 0;     // of `address` from the allocation's base
  cudaIpcMemHandle_t handle{};
};

// What each rank contributes to a direct operation's exchange.
struct IpcOpRecord {
  uint32_t magic = 0;
  uint32_t windowed = 0;  // this rank's buffers need the windowed mode
  uint64_t seq = 0;       // the operation's number on the communicator's IPC path
  IpcBuffer in, out;
};

// Every rank's `bytes` from `mine`, in rank order: an all-gather on the communicator.
Status ipc_allgather(core::Communicator& comm, const void* mine, size_t bytes,
                     std::vector<char>* all);

class IpcPeers {
 public:
  // Collective: every rank of `comm` calls it at the same point (its first collective on
  // device buffers). Allocates this rank's flags and windows, exchanges them and maps the
  // peers'. *out stays null when the ranks cannot use CUDA IPC, and *why_not says why (the
  // same on every rank); an error means the exchange itself failed.
  static Status create(core::Communicator& comm, int device, std::unique_ptr<IpcPeers>* out,
                       std::string* why_not);
  // The streams must be done with every operation (the engine drains them first).
  ~IpcPeers();
  IpcPeers(const IpcPeers&) = delete;
  IpcPeers& operator=(const IpcPeers&) = delete;

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  int blocks() const { return blocks_; }
  size_t slot_bytes() const { return slot_bytes_; }
  // Every rank is a thread of this process: buffers are used as they are, never exported.
  bool all_in_process() const { return all_in_process_; }
  const std::string& summary() const { return summary_; }

  uint64_t* flags() const { return reinterpret_cast<uint64_t*>(mapped_[rank_]); }
  uint64_t* flags_of(int q) const { return reinterpret_cast<uint64_t*>(mapped_[q]); }
  // Rank q's windows (4 slots: two per operation parity, two per chunk parity).
  char* windows_of(int q) const { return mapped_[q] + kFlagsBytes; }
  IpcHostWords* host_words() const { return host_; }
  IpcHostWords* host_words_device() const { return host_device_; }

  // Descriptor ring slot i: the host's pointer and the kernels'.
  static constexpr size_t kDescriptors = 64;
  IpcDescriptor* descriptor(size_t i) const { return descriptors_ + i; }
  const IpcDescriptor* descriptor_device(size_t i) const { return descriptors_device_ + i; }

  // This rank's buffer for a direct operation (nullptr: none): its address, and its IPC
  // handle where a peer in another process needs one and the memory can be exported.
  Status describe(const void* ptr, IpcBuffer* out);
  // Rank q's buffer as an address in this process: as it is for a rank of this process,
  // else through a mapping opened once per (rank, allocation) and kept until destruction
  // (`user`: the operation that uses it, so an idle mapping can be closed first when many
  // are open). An error when q's buffer cannot be mapped here.
  Status open(int q, const IpcBuffer& buffer, const std::shared_ptr<DeviceOp>& user,
              uint64_t* address);
  // Whether rank q's buffer can be used by every rank (the direct mode's condition).
  bool usable_by_all(int q, const IpcBuffer& buffer) const;

 private:
  static constexpr size_t kFlagsBytes = sizeof(uint64_t) * kIpcMaxBlocks * kIpcMaxRanks;
  IpcPeers() = default;
  void close_idle_mappings();

  int device_ = -1;
  int rank_ = 0;
  int nranks_ = 0;
  int blocks_ = 1;
  size_t slot_bytes_ = 0;
  bool all_in_process_ = false;
  std::string summary_;
  std::vector<int> pids_;
  char* memory_ = nullptr;        // this rank's flags + windows
  std::vector<char*> mapped_;     // every rank's, in this process (mine: memory_)
  std::vector<bool> opened_;      // mapped_[q] came from cudaIpcOpenMemHandle
  IpcHostWords* host_ = nullptr;  // mapped pinned
  IpcHostWords* host_device_ = nullptr;
  IpcDescriptor* descriptors_ = nullptr;  // mapped pinned ring
  IpcDescriptor* descriptors_device_ = nullptr;
  // This rank's exported allocations: buffer id -> handle.
  std::map<uint64_t, cudaIpcMemHandle_t> exported_;
  // Peers' allocations mapped here: (rank, buffer id) -> base here, last user.
  struct Mapping {
    char* base = nullptr;
    std::shared_ptr<DeviceOp> last_user;
  };
  std::map<std::pair<int, uint64_t>, Mapping> mappings_;
};

}  // namespace ciuic::cuda

#endif  // CIUIC_HAVE_CUDA
