// Same-node CUDA IPC: setting up the ranks' shared device memory, and mapping buffers.
#include "cuda/ipc.h"

#if CIUIC_HAVE_CUDA

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/config.h"
#include "base/log.h"
#include "coll/schedule.h"
#include "core/comm.h"
#include "cuda/driver.h"
#include "cuda/engine.h"

namespace ciuic::cuda {
namespace {

const config::IntParam kWindowBytes{
    "CIUIC_CUDA_IPC_WINDOW_BYTES", 4 << 20,
    "CUDA IPC: bytes of one window slot, the chunk a windowed operation copies through "
    "(each rank has four); must be the same on every rank"};

const config::IntParam kBlocks{
    "CIUIC_CUDA_IPC_BLOCKS", 0,
    "CUDA IPC: blocks per kernel (0: half of what the busiest GPU holds at once, shared by its "
    "ranks); more can deadlock when the ranks' kernels do not all fit on the GPU together; the "
    "same on every rank"};

constexpr uint32_t kSetupMagic = 0x43495043;  // "CIPC"
constexpr size_t kTextBytes = 96;

// What each rank publishes at setup.
struct SetupRecord {
  uint32_t magic = 0;
  uint32_t ok = 0;        // this rank allocated its memory (else `text` says why)
  uint32_t exported = 0;  // and has an IPC handle for it
  int32_t pid = 0;
  int32_t capacity = 0;  // blocks of the IPC kernel its GPU holds at once
  int32_t blocks = 0;    // CIUIC_CUDA_IPC_BLOCKS
  uint64_t slot_bytes = 0;
  uint64_t memory = 0;  // its flags + windows, in its process
  cudaIpcMemHandle_t handle{};
  char uuid[16] = {};
  char host[64] = {};
  char text[kTextBytes] = {};
};

// Whether this rank could map every peer's memory (else `text` says why).
struct Vote {
  uint32_t ok = 0;
  uint32_t pad = 0;
  char text[kTextBytes] = {};
};

void set_text(char* dst, const std::string& text) {
  std::memset(dst, 0, kTextBytes);
  std::memcpy(dst, text.data(), std::min(text.size(), kTextBytes - 1));
}

std::string text_of(const char* src, size_t bytes) { return std::string(src, strnlen(src, bytes)); }

std::string cuda_error(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

template <class T>
T record_at(const std::vector<char>& all, int q) {
  T t;
  std::memcpy(&t, all.data() + static_cast<size_t>(q) * sizeof(T), sizeof(T));
  return t;
}

}  // namespace

Status ipc_allgather(core::Communicator& comm, const void* mine, size_t bytes,
                     std::vector<char>* all) {
  const int n = comm.nranks(), r = comm.rank();
  all->assign(bytes * static_cast<size_t>(n), 0);
  std::memcpy(all->data() + static_cast<size_t>(r) * bytes, mine, bytes);
  coll::CollectiveArgs args;
  args.collective = coll::Collective::kAllgather;
  args.rank = r;
  args.nranks = n;
  args.count = bytes;
  args.datatype = CIUIC_UINT8;
  args.in_place = true;
  coll::Buffers buffers;
  buffers.send = all->data() + static_cast<size_t>(r) * bytes;
  buffers.recv = all->data();
  return comm.run(args, buffers);
}

Status IpcPeers::create(core::Communicator& comm, int device, std::unique_ptr<IpcPeers>* out,
                        std::string* why_not) {
  out->reset();
  std::unique_ptr<IpcPeers> p(new IpcPeers());
  p->device_ = device;
  p->rank_ = comm.rank();
  p->nranks_ = comm.nranks();
  const int n = p->nranks_;
  p->slot_bytes_ = static_cast<size_t>(
      std::clamp<int64_t>(kWindowBytes.get(), 64 << 10, int64_t{1} << 30) / 4096 * 4096);

  SetupRecord mine;
  mine.magic = kSetupMagic;
  mine.pid = static_cast<int32_t>(getpid());
  mine.slot_bytes = p->slot_bytes_;
  mine.blocks = static_cast<int32_t>(std::clamp<int64_t>(kBlocks.get(), 0, kIpcMaxBlocks));
  gethostname(mine.host, sizeof(mine.host) - 1);
  std::string problem;
  cudaDeviceProp prop{};
  cudaError_t e = cudaGetDeviceProperties(&prop, device);
  int per_sm = 0;
  if (e != cudaSuccess) {
    problem = cuda_error("cudaGetDeviceProperties", e);
  } else {
    std::memcpy(mine.uuid, &prop.uuid, sizeof(mine.uuid));
    Status s = ipc_blocks_per_sm(&per_sm);
    if (!s.ok()) problem = s.message();
    mine.capacity = prop.multiProcessorCount * per_sm;
    if (problem.empty() && per_sm < 1)
      problem = "the IPC kernel does not fit on a multiprocessor of " + std::string(prop.name);
  }
  const size_t bytes = kFlagsBytes + 4 * p->slot_bytes_;
  if (problem.empty()) {
    void* memory = nullptr;
    e = cudaMalloc(&memory, bytes);
    if (e != cudaSuccess) problem = cuda_error("cudaMalloc of the IPC windows", e);
    p->memory_ = static_cast<char*>(memory);
  }
  if (problem.empty()) {
    cudaStream_t zero = nullptr;  // a stream of our own: nothing else waits here
    e = cudaStreamCreateWithFlags(&zero, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMemsetAsync(p->memory_, 0, kFlagsBytes, zero);
    if (e == cudaSuccess) e = cudaStreamSynchronize(zero);
    if (zero != nullptr) (void)cudaStreamDestroy(zero);
    if (e != cudaSuccess) problem = cuda_error("clearing the IPC flags", e);
  }
  if (problem.empty()) {
    void* host = nullptr;
    e = cudaHostAlloc(&host, sizeof(IpcHostWords) + kDescriptors * sizeof(IpcDescriptor),
                      cudaHostAllocMapped | cudaHostAllocPortable);
    if (e != cudaSuccess) {
      problem = cuda_error("cudaHostAlloc", e);
    } else {
      std::memset(host, 0, sizeof(IpcHostWords) + kDescriptors * sizeof(IpcDescriptor));
      void* dev = nullptr;
      e = cudaHostGetDevicePointer(&dev, host, 0);
      p->host_ = static_cast<IpcHostWords*>(host);
      p->descriptors_ = reinterpret_cast<IpcDescriptor*>(p->host_ + 1);
      if (e != cudaSuccess) {
        problem = cuda_error("cudaHostGetDevicePointer", e);
      } else {
        p->host_device_ = static_cast<IpcHostWords*>(dev);
        p->descriptors_device_ = reinterpret_cast<IpcDescriptor*>(p->host_device_ + 1);
      }
    }
  }
  if (problem.empty()) {
    mine.ok = 1;
    mine.memory = reinterpret_cast<uint64_t>(p->memory_);
    e = cudaIpcGetMemHandle(&mine.handle, p->memory_);
    if (e == cudaSuccess) {
      mine.exported = 1;
    } else {
      (void)cudaGetLastError();
      set_text(mine.text, cuda_error("cudaIpcGetMemHandle", e));
    }
  } else {
    (void)cudaGetLastError();
    set_text(mine.text, problem);
  }

  std::vector<char> all;
  CIUIC_RETURN_IF_ERROR(ipc_allgather(comm, &mine, sizeof(mine), &all).prefix("CUDA IPC setup"));
  std::vector<SetupRecord> records;
  for (int q = 0; q < n; ++q) records.push_back(record_at<SetupRecord>(all, q));
  for (int q = 0; q < n; ++q)
    if (records[q].magic != kSetupMagic)
      return internal_error("CUDA IPC setup: rank " + std::to_string(q) +
                            " sent something else (did every rank pass CUDA buffers to this "
                            "collective, with the same ciuic?)");

  // What every rank can tell from the records alone (the same verdict everywhere).
  std::string verdict;
  for (int q = 0; q < n && verdict.empty(); ++q) {
    const SetupRecord& r = records[q];
    if (!r.ok)
      verdict = "rank " + std::to_string(q) + ": " + text_of(r.text, kTextBytes);
    else if (text_of(r.host, sizeof(r.host)) != text_of(mine.host, sizeof(mine.host)))
      verdict = "rank " + std::to_string(q) + " is on host " + text_of(r.host, sizeof(r.host)) +
                ", rank " + std::to_string(p->rank_) + " on " +
                text_of(mine.host, sizeof(mine.host)) +
                " (CIUIC_LOCAL_SIZE groups them, but CUDA IPC needs one host)";
    else if (r.slot_bytes != mine.slot_bytes)
      verdict = "CIUIC_CUDA_IPC_WINDOW_BYTES differs between ranks (" +
                std::to_string(r.slot_bytes) + " on rank " + std::to_string(q) + ", " +
                std::to_string(mine.slot_bytes) + " here)";
  }
  p->pids_.resize(static_cast<size_t>(n));
  for (int q = 0; q < n; ++q) p->pids_[q] = records[q].pid;
  p->all_in_process_ =
      std::all_of(p->pids_.begin(), p->pids_.end(), [&](int pid) { return pid == p->pids_[0]; });
  if (!verdict.empty()) {
    *why_not = verdict;
    return Status::Ok();  // p's destructor frees what this rank allocated
  }

  // Map the peers' memory; one rank failing turns IPC off for all.
  Vote vote;
  vote.ok = 1;
  p->mapped_.assign(static_cast<size_t>(n), nullptr);
  p->opened_.assign(static_cast<size_t>(n), false);
  for (int q = 0; q < n && vote.ok; ++q) {
    if (records[q].pid == mine.pid) {
      p->mapped_[q] = reinterpret_cast<char*>(records[q].memory);
      continue;
    }
    if (!records[q].exported) {
      vote.ok = 0;
      set_text(vote.text, "rank " + std::to_string(q) +
                              " cannot export its memory: " + text_of(records[q].text, kTextBytes));
      break;
    }
    void* mapped = nullptr;
    e = cudaIpcOpenMemHandle(&mapped, records[q].handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      vote.ok = 0;
      set_text(
          vote.text,
          cuda_error(
              ("mapping rank " + std::to_string(q) + "'s memory: cudaIpcOpenMemHandle").c_str(),
              e));
      break;
    }
    p->mapped_[q] = static_cast<char*>(mapped);
    p->opened_[q] = true;
  }
  CIUIC_RETURN_IF_ERROR(ipc_allgather(comm, &vote, sizeof(vote), &all).prefix("CUDA IPC setup"));
  for (int q = 0; q < n; ++q) {
    const Vote v = record_at<Vote>(all, q);
    if (!v.ok) {
      *why_not = "rank " + std::to_string(q) + ": " + text_of(v.text, kTextBytes);
      return Status::Ok();
    }
  }

  // Blocks per launch: every rank's kernels of one operation must fit on the GPUs at once
  // (they wait for each other), with room to spare for the application's and another
  // communicator's: half of what the busiest GPU holds, shared by the ranks on it.
  std::map<std::string, int> ranks_per_gpu;
  int capacity = 1 << 30;
  for (const SetupRecord& r : records) {
    ++ranks_per_gpu[std::string(r.uuid, sizeof(r.uuid))];
    capacity = std::min(capacity, r.capacity);
  }
  int busiest = 1;
  for (const auto& [uuid, count] : ranks_per_gpu) busiest = std::max(busiest, count);
  p->blocks_ = std::clamp(capacity / (2 * busiest), 1, kIpcMaxBlocks);
  if (records[0].blocks > 0) p->blocks_ = records[0].blocks;  // rank 0's setting, for all
  std::vector<int> distinct = p->pids_;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  p->summary_ = std::to_string(n) + " ranks in " + std::to_string(distinct.size()) +
                " process(es) on " + std::to_string(ranks_per_gpu.size()) + " GPU(s), " +
                std::to_string(p->blocks_) + " blocks per kernel, " +
                std::to_string(p->slot_bytes_ >> 10) + " KiB window slots";
  *out = std::move(p);
  return Status::Ok();
}

IpcPeers::~IpcPeers() {
  for (auto& [key, m] : mappings_) (void)cudaIpcCloseMemHandle(m.base);
  mappings_.clear();
  for (size_t q = 0; q < opened_.size(); ++q)
    if (opened_[q]) (void)cudaIpcCloseMemHandle(mapped_[q]);
  if (memory_ != nullptr) (void)cudaFree(memory_);
  if (host_ != nullptr) (void)cudaFreeHost(host_);
}

Status IpcPeers::describe(const void* ptr, IpcBuffer* out) {
  *out = IpcBuffer{};
  if (ptr == nullptr) return Status::Ok();
  out->address = reinterpret_cast<uint64_t>(ptr);
  if (all_in_process_) return Status::Ok();
  AllocationInfo info;
  CIUIC_RETURN_IF_ERROR(allocation_of(ptr, &info));
  if (!info.legacy_ipc) return Status::Ok();  // the operation runs windowed
  auto it = exported_.find(info.buffer_id);
  if (it == exported_.end()) {
    if (exported_.size() >= 4096) exported_.clear();  // handles are cheap to make again
    cudaIpcMemHandle_t handle;
    const cudaError_t e = cudaIpcGetMemHandle(&handle, reinterpret_cast<void*>(info.base));
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return Status::Ok();
    }
    it = exported_.emplace(info.buffer_id, handle).first;
  }
  out->buffer_id = info.buffer_id;
  out->offset = out->address - info.base;
  out->handle = it->second;
  return Status::Ok();
}

bool IpcPeers::usable_by_all(int q, const IpcBuffer& buffer) const {
  if (buffer.address == 0 || buffer.buffer_id != 0) return true;
  for (int pid : pids_)
    if (pid != pids_[q]) return false;
  return true;
}

void IpcPeers::close_idle_mappings() {
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    const auto& user = it->second.last_user;
    if (user && cudaEventQuery(user->done) == cudaErrorNotReady) {
      ++it;
      continue;
    }
    (void)cudaIpcCloseMemHandle(it->second.base);
    it = mappings_.erase(it);
  }
}

Status IpcPeers::open(int q, const IpcBuffer& buffer, const std::shared_ptr<DeviceOp>& user,
                      uint64_t* address) {
  *address = 0;
  if (buffer.address == 0) return Status::Ok();
  if (pids_[q] == pids_[rank_]) {
    *address = buffer.address;
    return Status::Ok();
  }
  if (buffer.buffer_id == 0)
    return internal_error("rank " + std::to_string(q) +
                          "'s buffer cannot be mapped here (it has no CUDA IPC handle)");
  const auto key = std::make_pair(q, buffer.buffer_id);
  auto it = mappings_.find(key);
  if (it == mappings_.end()) {
    if (mappings_.size() >= 1024) close_idle_mappings();
    void* base = nullptr;
    const cudaError_t e =
        cudaIpcOpenMemHandle(&base, buffer.handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return system_error(cuda_error(
          ("mapping rank " + std::to_string(q) + "'s buffer: cudaIpcOpenMemHandle").c_str(), e));
    }
    it = mappings_.emplace(key, Mapping{static_cast<char*>(base), nullptr}).first;
  }
  it->second.last_user = user;
  *address = reinterpret_cast<uint64_t>(it->second.base) + buffer.offset;
  return Status::Ok();
}

}  // namespace ciuic::cuda

#endif  // CIUIC_HAVE_CUDA
