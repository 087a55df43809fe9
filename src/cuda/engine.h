// The stream engine (CUDA builds): one per communicator that has served a device buffer.
//
// On the caller's thread, issue() enqueues on the caller's stream, per chunk of the message:
// a copy of the input into a slot of pinned staging memory and an event; then, per chunk,
// a wait on a pinned host word (cuStreamWaitValue32, or a one-thread kernel where the
// driver lacks stream memory operations) and the copy of the result back into the output.
// The engine's thread takes the operations in issue order: it waits for a chunk's event,
// runs the host collective on the staging slot through the Communicator, and writes the
// chunk's number into the word, which lets the stream go on. Chunks pipeline: while the
// wire carries one, the stream copies the next in and the previous out.
//
// When every rank sits on one node, the collectives that the IPC kernel serves skip the
// staging: issue() enqueues the kernel (ipc_kernels.h), which reads the peers' memory
// directly (engine_ipc.cc).
#pragma once

#if CIUIC_HAVE_CUDA

#include <cuda_runtime_api.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "coll/executor.h"
#include "coll/schedule.h"
#include "core/comm.h"
#include "cuda/device.h"
#include "cuda/ipc.h"

namespace ciuic::cuda {

class Engine;

// Reusable events of one device (disable-timing).
class EventPool {
 public:
  ~EventPool();
  Status get(cudaEvent_t* out);
  void put(cudaEvent_t event);

 private:
  std::mutex mutex_;
  std::vector<cudaEvent_t> free_;
};

// One operation issued on a stream. Shared by the engine and a request.
struct DeviceOp {
  Engine* engine = nullptr;  // outlives the op (the request holds the communicator handle);
                             // null while the op's group is still open
  uint64_t seq = 0;
  cudaEvent_t done = nullptr;  // recorded after the op's last work on the stream
  std::shared_ptr<EventPool> pool;
  bool ipc = false;  // ran by the IPC kernel: its failures are the engine's host words'
  std::mutex mutex;
  std::condition_variable cv;
  bool host_done = false;  // the host collective ran (or failed) and the stream was released
  Status result;
  ~DeviceOp();
};

class Engine {
 public:
  static Status create(const std::shared_ptr<core::Communicator>& comm, int device,
                       std::shared_ptr<Engine>* out);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  int device() const { return device_; }
  Status issue(const coll::CollectiveArgs& args, const coll::Buffers& user, cudaStream_t stream,
               std::shared_ptr<DeviceOp>* out);
  Status issue_group(std::vector<CommState::GroupPart>& parts, cudaStream_t stream);
  // Waits until every queued operation has run its host part.
  Status flush();
  void abort();
  // The first error of an operation whose call had already returned, if any.
  Status sticky_error();
  int64_t timeout_ms() const;
  Deadline deadline() const;

 private:
  struct Chunk {
    coll::CollectiveArgs args;
    coll::Buffers buffers;
    cudaEvent_t ready = nullptr;  // the stream reached this chunk (its input is staged)
    uint32_t release = 0;         // written to the flag word when the chunk is done
  };
  // A direct-mode IPC operation's exchange of buffers, run by the engine's thread.
  struct IpcExchange {
    IpcOpRecord mine;
    size_t descriptor = 0;  // its slot in the ring
    uint32_t release = 0;   // the stream waits for this before the kernel
  };
  struct Job {
    std::shared_ptr<DeviceOp> op;
    std::unique_ptr<IpcExchange> ipc;  // set: the job is this exchange
    std::vector<Chunk> chunks;
    bool p2p = false;  // send/recv: chunks are its parts (a group's, or just one), run together
    bool failed_to_enqueue = false;
    std::vector<std::shared_ptr<DeviceOp>> part_ops;  // a group's requests
  };
  // A pinned staging buffer, busy until its last user's op completed on the GPU.
  struct Block {
    char* host = nullptr;
    size_t bytes = 0;
    std::shared_ptr<DeviceOp> last_user;
    bool reserved = false;  // taken by the call being issued
  };

  Engine() = default;
  Status start(const std::shared_ptr<core::Communicator>& comm, int device);
  Status acquire_staging(size_t bytes, char** out);  // caller holds issue_mutex_
  // Marks the reserved blocks as used by `op` (busy until its last work on the stream).
  void commit_staging(const std::shared_ptr<DeviceOp>& op);
  Status check_stream(cudaStream_t stream, const char* name);
  Status enqueue_wait(cudaStream_t stream, uint32_t value);
  // engine_ipc.cc: whether the IPC kernel can run this call; on the first such call the
  // ranks set it up (collectively). Caller holds issue_mutex_.
  Status ipc_serves(const coll::CollectiveArgs& args, const char* name, bool* serves);
  Status issue_ipc(const coll::CollectiveArgs& args, const coll::Buffers& user, cudaStream_t stream,
                   std::shared_ptr<DeviceOp>* out);  // issue_mutex_ held
  void run_ipc_exchange(Job& job);
  Status ipc_error();  // a kernel gave up (the host words say why), else Ok
  void worker_loop();
  void run_collective(Job& job);
  void run_p2p(Job& job);
  Status wait_ready(cudaEvent_t event, const Deadline& deadline, const std::string& what);
  void release(uint32_t value);
  // Records the engine's first error; `local`: the communicator does not know of it (the
  // stream never arrived, a CUDA call failed), so it is aborted to tell the peers.
  void fail(const Status& error, bool local);
  void finish(DeviceOp& op, const Status& result);
  void prune_in_flight();  // caller holds issue_mutex_

  std::shared_ptr<core::Communicator> comm_;
  int device_ = -1;
  int rank_ = 0;
  std::shared_ptr<EventPool> pool_;
  uint32_t* flag_ = nullptr;  // mapped pinned host word the streams wait on (atomic stores)
  void* flag_device_ = nullptr;
  bool memops_ = false;  // cuStreamWaitValue32 (else the wait kernel)
  size_t chunk_bytes_ = 0;
  int slots_ = 0;

  std::mutex issue_mutex_;  // enqueueing on streams, the staging blocks, release numbers
  std::vector<std::unique_ptr<Block>> blocks_;
  size_t staging_bytes_ = 0;
  std::vector<std::shared_ptr<DeviceOp>> in_flight_;  // issued, GPU side not seen complete
  uint32_t next_release_ = 0;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::condition_variable idle_cv_;
  std::deque<Job> queue_;
  uint64_t next_seq_ = 1;
  bool running_ = false;
  bool stopping_ = false;
  std::thread worker_;

  // Same-node CUDA IPC (engine_ipc.cc).
  enum class IpcState { kUndecided, kOn, kOff };
  IpcState ipc_state_ = IpcState::kUndecided;  // under issue_mutex_
  std::string ipc_why_not_;                    // kOff: why
  std::unique_ptr<IpcPeers> ipc_;
  std::atomic<IpcHostWords*> ipc_words_{nullptr};  // ipc_'s, once on
  uint64_t ipc_seq_ = 0;
  std::shared_ptr<DeviceOp> ipc_last_;  // the last IPC operation: the next one waits for it
  cudaStream_t ipc_last_stream_ = nullptr;
  std::vector<std::shared_ptr<DeviceOp>> ipc_descriptor_users_;

  std::atomic<bool> aborted_{false};
  std::atomic<bool> failed_{false};
  std::mutex error_mutex_;
  Status error_;
};

}  // namespace ciuic::cuda

#endif  // CIUIC_HAVE_CUDA
