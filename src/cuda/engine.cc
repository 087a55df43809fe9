// The stream engine: staging through pinned host memory, ordered on the caller's stream.
#include "cuda/engine.h"

#if CIUIC_HAVE_CUDA

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "base/config.h"
#include "base/log.h"
#include "cuda/kernels.h"
#include "reduce/reduce.h"

namespace ciuic::cuda {
namespace {

const config::IntParam kChunkBytes{
    "CIUIC_CUDA_CHUNK_BYTES", 4 << 20,
    "CUDA buffers: pipelining chunk of the staging path in bytes (copy in, collective and copy "
    "out overlap chunk by chunk); must be the same on every rank"};
const config::IntParam kSlots{
    "CIUIC_CUDA_SLOTS", 4,
    "CUDA buffers: staging slots per operation, the chunks it has in flight"};
const config::IntParam kStagingBytes{
    "CIUIC_CUDA_STAGING_BYTES", int64_t{1} << 30,
    "CUDA buffers: pinned staging memory per communicator past which a call waits for an "
    "earlier call's to come free"};
const config::StringParam kStreamWait{
    "CIUIC_CUDA_STREAM_WAIT", "auto",
    "How a stream waits for ciuic's host side: auto (cuStreamWaitValue32 where the driver has "
    "it), memop, or kernel (a one-thread kernel polling mapped host memory)"};

Status cuda_status(const char* what, cudaError_t e) {
  if (e == cudaSuccess) return Status::Ok();
  std::string message =
      std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  if (e == cudaErrorInvalidResourceHandle || e == cudaErrorInvalidValue ||
      e == cudaErrorInvalidDevice || e == cudaErrorContextIsDestroyed)
    return invalid_argument(std::move(message));
  return system_error(std::move(message));
}

#define CIUIC_CUDA_CALL(call) CIUIC_RETURN_IF_ERROR(cuda_status(#call, call))

// Makes `device` current on this thread for the guard's life (the application's device is
// put back: its runtime and ciuic's share the driver's per-thread current context).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    status_ = cuda_status("cudaGetDevice", cudaGetDevice(&previous_));
    if (status_.ok() && previous_ != device) {
      status_ = cuda_status("cudaSetDevice", cudaSetDevice(device));
      switched_ = status_.ok();
    }
  }
  ~DeviceGuard() {
    if (switched_) (void)cudaSetDevice(previous_);
  }
  const Status& status() const { return status_; }

 private:
  int previous_ = 0;
  bool switched_ = false;
  Status status_;
};

bool is_p2p(coll::Collective c) {
  return c == coll::Collective::kSend || c == coll::Collective::kRecv;
}

// Copies `rows` blocks of `width` bytes, `src_pitch` apart, to `dst_pitch` apart.
Status copy_rows(char* dst, size_t dst_pitch, const char* src, size_t src_pitch, size_t width,
                 int rows, cudaStream_t stream) {
  if (rows == 1 || width == 0) {
    if (width == 0) return Status::Ok();
    CIUIC_CUDA_CALL(cudaMemcpyAsync(dst, src, width, cudaMemcpyDefault, stream));
    return Status::Ok();
  }
  if (dst_pitch < (size_t{1} << 31) && src_pitch < (size_t{1} << 31)) {
    CIUIC_CUDA_CALL(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width,
                                      static_cast<size_t>(rows), cudaMemcpyDefault, stream));
    return Status::Ok();
  }
  for (int r = 0; r < rows; ++r)
    CIUIC_CUDA_CALL(cudaMemcpyAsync(dst + r * dst_pitch, src + r * src_pitch, width,
                                    cudaMemcpyDefault, stream));
  return Status::Ok();
}

}  // namespace

// ---- EventPool, DeviceOp ----

EventPool::~EventPool() {
  for (cudaEvent_t e : free_) (void)cudaEventDestroy(e);
}

Status EventPool::get(cudaEvent_t* out) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!free_.empty()) {
      *out = free_.back();
      free_.pop_back();
      return Status::Ok();
    }
  }
  CIUIC_CUDA_CALL(cudaEventCreateWithFlags(out, cudaEventDisableTiming));
  return Status::Ok();
}

void EventPool::put(cudaEvent_t event) {
  if (event == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  free_.push_back(event);
}

DeviceOp::~DeviceOp() {
  if (pool) pool->put(done);
}

// ---- Engine ----

Status Engine::create(const std::shared_ptr<core::Communicator>& comm, int device,
                      std::shared_ptr<Engine>* out) {
  std::shared_ptr<Engine> engine(new Engine());
  CIUIC_RETURN_IF_ERROR(engine->start(comm, device));
  *out = std::move(engine);
  return Status::Ok();
}

Status Engine::start(const std::shared_ptr<core::Communicator>& comm, int device) {
  comm_ = comm;
  device_ = device;
  rank_ = comm->rank();
  pool_ = std::make_shared<EventPool>();
  chunk_bytes_ =
      static_cast<size_t>(std::clamp<int64_t>(kChunkBytes.get(), 4096, int64_t{1} << 30));
  slots_ = static_cast<int>(std::clamp<int64_t>(kSlots.get(), 1, 64));
  DeviceGuard guard(device);
  CIUIC_RETURN_IF_ERROR(guard.status());
  void* flag = nullptr;
  CIUIC_CUDA_CALL(cudaHostAlloc(&flag, 64, cudaHostAllocMapped | cudaHostAllocPortable));
  flag_ = static_cast<uint32_t*>(flag);
  std::memset(flag, 0, 64);
  Status s =
      cuda_status("cudaHostGetDevicePointer", cudaHostGetDevicePointer(&flag_device_, flag, 0));
  if (!s.ok()) {
    (void)cudaFreeHost(flag);
    flag_ = nullptr;
    return s;
  }
  const DriverApi* driver = loaded_driver();
  const bool have_memops = driver != nullptr && driver->stream_wait_value32 != nullptr;
  const std::string mode = kStreamWait.get();
  if (mode == "memop" && !have_memops) {
    (void)cudaFreeHost(flag);
    flag_ = nullptr;
    return unsupported(
        "CIUIC_CUDA_STREAM_WAIT=memop, but the CUDA driver has no cuStreamWaitValue32_v2 "
        "(update the driver, or use auto or kernel)");
  }
  if (mode != "auto" && mode != "memop" && mode != "kernel")
    CIUIC_LOG_WARN(log::kInit, "CIUIC_CUDA_STREAM_WAIT=%s is not auto, memop or kernel: using auto",
                   mode.c_str());
  memops_ = have_memops && mode != "kernel";
  cudaDeviceProp prop{};
  (void)cudaGetDeviceProperties(&prop, device);
  CIUIC_LOG_INFO(log::kInit,
                 "rank %d: CUDA buffers on GPU %d (%s) go through pinned staging, %zu-byte chunks, "
                 "%d slots per operation; streams wait by %s",
                 rank_, device, prop.name, chunk_bytes_, slots_,
                 memops_ ? "cuStreamWaitValue32" : "a polling kernel");
  worker_ = std::thread([this] { worker_loop(); });
  return Status::Ok();
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // The streams may still be copying out of staging or reading the flag word: free them
  // only once every operation's last work on its stream has completed.
  std::lock_guard<std::mutex> lock(issue_mutex_);
  DeviceGuard guard(device_);
  Deadline deadline = Deadline::after_ms(timeout_ms());
  bool drained = true;
  for (const auto& op : in_flight_) {
    while (drained && cudaEventQuery(op->done) == cudaErrorNotReady) {
      if (deadline.expired()) drained = false;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  in_flight_.clear();
  ipc_last_.reset();
  ipc_descriptor_users_.clear();
  if (!drained) {
    CIUIC_LOG_WARN(log::kColl,
                   "rank %d: destroying a communicator whose CUDA streams did not finish within "
                   "%lld ms: its pinned staging memory (and CUDA IPC memory) is left allocated",
                   rank_, static_cast<long long>(timeout_ms()));
    (void)ipc_.release();  // the kernels may still use it
    return;
  }
  ipc_.reset();
  for (auto& b : blocks_) {
    b->last_user.reset();
    (void)cudaFreeHost(b->host);
  }
  if (flag_ != nullptr) (void)cudaFreeHost(flag_);
}

// The communicator's deadline (ciuic_comm_set_timeout, else CIUIC_TIMEOUT_MS) bounds every
// wait here too.
int64_t Engine::timeout_ms() const { return comm_->timeout_ms(); }
Deadline Engine::deadline() const { return Deadline::after_ms(timeout_ms()); }

Status Engine::sticky_error() {
  if (!failed_.load()) {
    Status kernel = ipc_error();
    if (kernel.ok()) return Status::Ok();
    fail(kernel, true);
  }
  std::lock_guard<std::mutex> lock(error_mutex_);
  return Status(error_.code(), "an earlier operation on a CUDA stream failed: " + error_.message());
}

void Engine::prune_in_flight() {
  in_flight_.erase(std::remove_if(in_flight_.begin(), in_flight_.end(),
                                  [](const std::shared_ptr<DeviceOp>& op) {
                                    return cudaEventQuery(op->done) != cudaErrorNotReady;
                                  }),
                   in_flight_.end());
}

Status Engine::acquire_staging(size_t bytes, char** out) {
  auto is_free = [](Block& b) {
    if (b.reserved) return false;
    if (b.last_user && cudaEventQuery(b.last_user->done) == cudaErrorNotReady) return false;
    b.last_user.reset();
    return true;
  };
  const size_t cap = static_cast<size_t>(std::max<int64_t>(kStagingBytes.get(), 0));
  Deadline deadline = Deadline::after_ms(timeout_ms());
  for (;;) {
    Block* best = nullptr;
    for (auto& b : blocks_)
      if (b->bytes >= bytes && is_free(*b) && (best == nullptr || b->bytes < best->bytes))
        best = b.get();
    if (best != nullptr) {
      best->reserved = true;
      *out = best->host;
      return Status::Ok();
    }
    if (staging_bytes_ + bytes <= cap || blocks_.empty()) break;
    // Over the cap: give back free blocks too small for this call, else wait for one.
    bool freed = false;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (!is_free(*blocks_[i])) continue;
      (void)cudaFreeHost(blocks_[i]->host);
      staging_bytes_ -= blocks_[i]->bytes;
      blocks_.erase(blocks_.begin() + static_cast<long>(i));
      freed = true;
      break;
    }
    if (freed) continue;
    if (deadline.expired())
      return timeout_error(
          "waiting for pinned staging memory (CIUIC_CUDA_STAGING_BYTES=" + std::to_string(cap) +
          " is in use by earlier operations that did not finish)");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  const size_t rounded = (bytes + (size_t{1} << 20) - 1) & ~((size_t{1} << 20) - 1);
  auto block = std::make_unique<Block>();
  void* p = nullptr;
  CIUIC_CUDA_CALL(cudaHostAlloc(&p, rounded, cudaHostAllocPortable));
  block->host = static_cast<char*>(p);
  block->bytes = rounded;
  block->reserved = true;
  staging_bytes_ += rounded;
  *out = block->host;
  blocks_.push_back(std::move(block));
  return Status::Ok();
}

void Engine::commit_staging(const std::shared_ptr<DeviceOp>& op) {
  for (auto& b : blocks_) {
    if (!b->reserved) continue;
    b->reserved = false;
    if (op) b->last_user = op;
  }
}

Status Engine::check_stream(cudaStream_t stream, const char* name) {
  // The legacy and per-thread default streams are the current device's (device_ here).
  int stream_device = device_;
  if (stream != cudaStreamLegacy && stream != cudaStreamPerThread) {
    cudaError_t e = cudaStreamGetDevice(stream, &stream_device);
    if (e != cudaSuccess)
      return cuda_status(
          (std::string(name) + ": the stream is not a usable CUDA stream: cudaStreamGetDevice")
              .c_str(),
          e);
  }
  if (stream_device != device_)
    return invalid_argument(std::string(name) + ": the stream is on GPU " +
                            std::to_string(stream_device) +
                            " but this communicator's CUDA buffers are on GPU " +
                            std::to_string(device_) + " (a communicator serves one GPU)");
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CIUIC_CUDA_CALL(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    return unsupported(std::string(name) +
                       ": the stream is being captured into a CUDA graph; ciuic operations cannot "
                       "be captured (issue them outside the capture)");
  return Status::Ok();
}

Status Engine::enqueue_wait(cudaStream_t stream, uint32_t value) {
  if (memops_) {
    const DriverApi* driver = loaded_driver();
    CuResult r = driver->stream_wait_value32(stream, reinterpret_cast<CuDevicePtr>(flag_device_),
                                             value, 0 /* CU_STREAM_WAIT_VALUE_GEQ */);
    if (r != 0) return system_error("cuStreamWaitValue32: " + driver_error(*driver, r));
    return Status::Ok();
  }
  return launch_wait_value(stream, static_cast<const volatile uint32_t*>(flag_device_), value);
}

Status Engine::issue(const coll::CollectiveArgs& args, const coll::Buffers& user,
                     cudaStream_t stream, std::shared_ptr<DeviceOp>* out) {
  CIUIC_RETURN_IF_ERROR(sticky_error());
  const char* name = coll::collective_name(args.collective);
  DeviceGuard guard(device_);
  CIUIC_RETURN_IF_ERROR(guard.status());
  CIUIC_RETURN_IF_ERROR(check_stream(stream, name));

  {
    std::lock_guard<std::mutex> issue_lock(issue_mutex_);
    bool ipc = false;
    CIUIC_RETURN_IF_ERROR(ipc_serves(args, name, &ipc));
    if (ipc) return issue_ipc(args, user, stream, out);
  }

  const Layout l = layout_of(args, user);
  const size_t elem = reduce::datatype_size(args.datatype);
  const size_t count = args.count;
  const bool p2p = is_p2p(args.collective);
  // Chunks of cc elements per row; a slot holds l.rows rows of one chunk back to back, so
  // each chunk is a whole collective of count cc over the slot, in place.
  size_t cc = count;
  const size_t row_cap = std::max<size_t>(1, chunk_bytes_ / (static_cast<size_t>(l.rows) * elem));
  if (!p2p && count > row_cap) cc = row_cap >= 256 ? row_cap / 256 * 256 : row_cap;
  const size_t nchunks = count == 0 ? 1 : (count + cc - 1) / cc;
  const int slots = static_cast<int>(std::min<size_t>(nchunks, static_cast<size_t>(slots_)));
  const size_t slot_bytes = static_cast<size_t>(l.rows) * cc * elem;

  std::lock_guard<std::mutex> issue_lock(issue_mutex_);
  prune_in_flight();
  char* staging = nullptr;
  if (slot_bytes > 0)
    CIUIC_RETURN_IF_ERROR(
        acquire_staging(slot_bytes * static_cast<size_t>(slots), &staging).prefix(name));
  auto op = std::make_shared<DeviceOp>();
  op->engine = this;
  op->pool = pool_;
  Status got = pool_->get(&op->done);
  if (!got.ok()) {
    commit_staging(nullptr);
    return got;
  }
  Job job;
  job.op = op;
  job.p2p = p2p;
  job.chunks.resize(nchunks);
  for (size_t k = 0; k < nchunks; ++k) {
    Chunk& c = job.chunks[k];
    Status s = pool_->get(&c.ready);
    if (!s.ok()) {
      for (size_t j = 0; j < k; ++j) pool_->put(job.chunks[j].ready);
      commit_staging(nullptr);
      return s;
    }
    const size_t first = k * cc;
    const size_t n = count == 0 ? 0 : std::min(cc, count - first);
    char* slot =
        staging == nullptr ? nullptr : staging + (k % static_cast<size_t>(slots)) * slot_bytes;
    const size_t row = n * elem;
    c.args = args;
    c.args.count = n;
    c.args.in_place = !p2p && args.collective != coll::Collective::kBarrier;
    c.args.in_place_mpi = false;
    c.buffers = coll::Buffers{};
    switch (args.collective) {
      case coll::Collective::kAllgather:
        c.buffers.send = slot + static_cast<size_t>(args.rank) * row;
        c.buffers.recv = slot;
        break;
      case coll::Collective::kReduceScatter:
        c.buffers.send = slot;
        c.buffers.recv = slot + static_cast<size_t>(args.rank) * row;
        break;
      case coll::Collective::kBarrier:
        break;
      default:
        c.buffers.send = slot;
        c.buffers.recv = slot;
        break;
    }
  }

  // Enqueue: the first `slots` chunks' inputs, then per chunk its wait, its output, and the
  // input of the chunk that reuses its slot (after the output, in stream order).
  auto copy_in = [&](size_t k) -> Status {
    Chunk& c = job.chunks[k];
    const size_t row = c.args.count * elem;
    if (l.in != nullptr && row > 0) {
      char* slot = const_cast<char*>(static_cast<const char*>(c.buffers.send));
      if (args.collective == coll::Collective::kAllgather)
        slot = static_cast<char*>(c.buffers.recv);
      CIUIC_RETURN_IF_ERROR(copy_rows(slot + static_cast<size_t>(l.in_row) * row, row,
                                      l.in + k * cc * elem, count * elem, row, l.in_rows, stream));
    }
    CIUIC_CUDA_CALL(cudaEventRecord(c.ready, stream));
    return Status::Ok();
  };
  auto copy_out = [&](size_t k) -> Status {
    Chunk& c = job.chunks[k];
    const size_t row = c.args.count * elem;
    if (l.out == nullptr || row == 0) return Status::Ok();
    const char* slot = static_cast<const char*>(c.buffers.send);
    if (args.collective == coll::Collective::kAllgather ||
        args.collective == coll::Collective::kRecv)
      slot = static_cast<const char*>(c.buffers.recv);
    return copy_rows(l.out + k * cc * elem, count * elem,
                     slot + static_cast<size_t>(l.out_row) * row, row, row, l.out_rows, stream);
  };
  const uint32_t base = next_release_;
  for (size_t k = 0; k < nchunks; ++k) job.chunks[k].release = base + static_cast<uint32_t>(k) + 1;
  Status s;
  bool waits_enqueued = false;
  for (size_t k = 0; k < static_cast<size_t>(slots) && s.ok(); ++k) s = copy_in(k);
  for (size_t k = 0; k < nchunks && s.ok(); ++k) {
    waits_enqueued = true;
    s = enqueue_wait(stream, job.chunks[k].release);
    if (s.ok()) s = copy_out(k);
    if (s.ok() && k + slots < nchunks) s = copy_in(k + static_cast<size_t>(slots));
  }
  if (s.ok()) s = cuda_status("cudaEventRecord", cudaEventRecord(op->done, stream));
  if (!s.ok() && !waits_enqueued) {
    for (Chunk& c : job.chunks) pool_->put(c.ready);
    commit_staging(nullptr);
    return s.prefix(name);
  }
  next_release_ = base + static_cast<uint32_t>(nchunks);
  commit_staging(op);
  in_flight_.push_back(op);
  if (!s.ok()) {
    // The stream already waits on numbers only this job releases: queue it to release them.
    job.failed_to_enqueue = true;
    s.prefix(std::string(name) + " on rank " + std::to_string(rank_));
    fail(s, true);
  }
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    op->seq = next_seq_++;
    queue_.push_back(std::move(job));
  }
  queue_cv_.notify_all();
  if (out != nullptr) *out = op;
  return s;
}

Status Engine::issue_group(std::vector<CommState::GroupPart>& parts, cudaStream_t stream) {
  CIUIC_RETURN_IF_ERROR(sticky_error());
  const char* name = "send/recv group";
  DeviceGuard guard(device_);
  CIUIC_RETURN_IF_ERROR(guard.status());
  CIUIC_RETURN_IF_ERROR(check_stream(stream, name));
  std::lock_guard<std::mutex> issue_lock(issue_mutex_);
  prune_in_flight();
  auto op = std::make_shared<DeviceOp>();  // the group's own: staging and shutdown track it
  op->engine = this;
  op->pool = pool_;
  Job job;
  job.op = op;
  job.p2p = true;
  job.chunks.resize(parts.size());
  Status s = pool_->get(&op->done);
  if (s.ok()) s = pool_->get(&job.chunks[0].ready);
  for (size_t i = 0; i < parts.size() && s.ok(); ++i) {
    const CommState::GroupPart& part = parts[i];
    Chunk& c = job.chunks[i];
    c.args = part.args;
    c.args.in_place = false;
    const size_t bytes = part.args.count * reduce::datatype_size(part.args.datatype);
    char* block = nullptr;
    if (bytes > 0) s = acquire_staging(bytes, &block);
    c.buffers.send = block;
    c.buffers.recv = block;
    if (s.ok() && part.op) {
      part.op->engine = this;
      part.op->pool = pool_;
      s = pool_->get(&part.op->done);
    }
  }
  if (!s.ok()) {
    pool_->put(job.chunks[0].ready);
    job.chunks[0].ready = nullptr;
    commit_staging(nullptr);
    return s.prefix(name);
  }
  // Every send's input, then one wait for the whole group, then every receive's result.
  for (size_t i = 0; i < parts.size() && s.ok(); ++i) {
    const size_t bytes = parts[i].args.count * reduce::datatype_size(parts[i].args.datatype);
    if (parts[i].args.collective == coll::Collective::kSend && bytes > 0)
      s = cuda_status("cudaMemcpyAsync",
                      cudaMemcpyAsync(const_cast<void*>(job.chunks[i].buffers.send),
                                      parts[i].buffers.send, bytes, cudaMemcpyDefault, stream));
  }
  if (s.ok()) s = cuda_status("cudaEventRecord", cudaEventRecord(job.chunks[0].ready, stream));
  if (!s.ok()) {
    pool_->put(job.chunks[0].ready);
    job.chunks[0].ready = nullptr;
    commit_staging(nullptr);
    return s.prefix(name);
  }
  const uint32_t release = ++next_release_;
  for (Chunk& c : job.chunks) c.release = release;
  s = enqueue_wait(stream, release);
  for (size_t i = 0; i < parts.size() && s.ok(); ++i) {
    const size_t bytes = parts[i].args.count * reduce::datatype_size(parts[i].args.datatype);
    if (parts[i].args.collective == coll::Collective::kRecv && bytes > 0)
      s = cuda_status("cudaMemcpyAsync",
                      cudaMemcpyAsync(parts[i].buffers.recv, job.chunks[i].buffers.recv, bytes,
                                      cudaMemcpyDefault, stream));
  }
  if (s.ok()) s = cuda_status("cudaEventRecord", cudaEventRecord(op->done, stream));
  for (size_t i = 0; i < parts.size() && s.ok(); ++i)
    if (parts[i].op) s = cuda_status("cudaEventRecord", cudaEventRecord(parts[i].op->done, stream));
  commit_staging(op);
  in_flight_.push_back(op);
  for (auto& part : parts)
    if (part.op) job.part_ops.push_back(part.op);
  if (!s.ok()) {
    job.failed_to_enqueue = true;
    s.prefix(std::string(name) + " on rank " + std::to_string(rank_));
    fail(s, true);
  }
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    op->seq = next_seq_++;
    for (auto& part : job.part_ops) part->seq = op->seq;
    queue_.push_back(std::move(job));
  }
  queue_cv_.notify_all();
  return s;
}

Status Engine::flush() {
  std::unique_lock<std::mutex> lock(queue_mutex_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !running_; });
  return Status::Ok();
}

void Engine::abort() {
  aborted_.store(true);
  if (IpcHostWords* words = ipc_words_.load())  // waiting IPC kernels give up
    __atomic_store_n(&words->abort, 1u, __ATOMIC_SEQ_CST);
  queue_cv_.notify_all();
}

void Engine::release(uint32_t value) { __atomic_store_n(flag_, value, __ATOMIC_SEQ_CST); }

void Engine::fail(const Status& error, bool local) {
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (failed_.load()) return;
    error_ = error;
    failed_.store(true);
  }
  CIUIC_LOG_WARN(log::kColl, "rank %d: %s", rank_, error.message().c_str());
  // A failure the communicator did not see itself (the stream never arrived, a CUDA call
  // failed): the peers wait for this rank's part, so tell them.
  if (local) comm_->abort();
}

void Engine::finish(DeviceOp& op, const Status& result) {
  std::lock_guard<std::mutex> lock(op.mutex);
  op.result = result;
  op.host_done = true;
  op.cv.notify_all();
}

Status Engine::wait_ready(cudaEvent_t event, const Deadline& deadline, const std::string& what) {
  for (uint64_t spin = 0;; ++spin) {
    cudaError_t e = cudaEventQuery(event);
    if (e == cudaSuccess) return Status::Ok();
    if (e != cudaErrorNotReady)
      return cuda_status((what + ": waiting for the stream: cudaEventQuery").c_str(), e);
    if (aborted_.load())
      return aborted_error(what + ": the communicator was aborted while waiting for the stream");
    if (deadline.expired())
      return timeout_error(
          what + " on rank " + std::to_string(rank_) +
          ": the stream did not reach the operation within " + std::to_string(timeout_ms()) +
          " ms (earlier work on the stream, or an event it waits for, never finished)");
    if (spin < 256) continue;
    if (spin < 4096) {
      sched_yield();
      continue;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

namespace {
std::string label_of(const coll::CollectiveArgs& a, size_t chunk, size_t chunks) {
  std::string s = std::string(coll::collective_name(a.collective)) + " on a CUDA stream";
  if (chunks > 1)
    s += " (chunk " + std::to_string(chunk + 1) + " of " + std::to_string(chunks) + ")";
  return s;
}
}  // namespace

void Engine::run_collective(Job& job) {
  Status s = job.failed_to_enqueue ? sticky_error() : Status::Ok();
  for (size_t k = 0; k < job.chunks.size(); ++k) {
    Chunk& c = job.chunks[k];
    if (s.ok()) s = sticky_error();
    if (s.ok()) {
      s = wait_ready(c.ready, deadline(), label_of(c.args, k, job.chunks.size()));
      if (!s.ok()) fail(s, true);
    }
    if (s.ok()) {
      s = comm_->run(c.args, c.buffers);
      if (!s.ok()) fail(s, false);
    }
    release(c.release);
    pool_->put(c.ready);
  }
  finish(*job.op, s);
}

void Engine::run_p2p(Job& job) {
  // One send/recv, or a group's: the first part's event stands for all (their inputs were
  // staged before it), and the communicator runs the parts as one group.
  Status s = sticky_error();
  if (s.ok()) {
    s = wait_ready(job.chunks.front().ready, deadline(), label_of(job.chunks.front().args, 0, 1));
    if (!s.ok()) fail(s, true);
  }
  std::vector<std::shared_ptr<core::Operation>> ops;
  for (size_t i = 0; i < job.chunks.size() && s.ok(); ++i) {
    std::shared_ptr<core::Operation> op;
    s = comm_->submit(job.chunks[i].args, job.chunks[i].buffers, &op);
    if (s.ok())
      ops.push_back(op);
    else
      fail(s, true);
  }
  for (auto& op : ops) {  // waiting starts them: queued together, they run as one group
    Status r = comm_->wait(op);
    if (s.ok() && !r.ok()) {
      s = r;
      fail(s, false);
    }
  }
  release(job.chunks.front().release);
  pool_->put(job.chunks.front().ready);
  finish(*job.op, s);
  for (auto& part : job.part_ops) finish(*part, s);
}

void Engine::worker_loop() {
  (void)cudaSetDevice(device_);
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      running_ = true;
      job = &queue_.front();  // stays put: the deque only grows at the back meanwhile
    }
    if (job->ipc)
      run_ipc_exchange(*job);
    else if (job->p2p)
      run_p2p(*job);
    else
      run_collective(*job);
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      queue_.pop_front();
      running_ = false;
    }
    idle_cv_.notify_all();
  }
}

// ---- the API's entry points ----

CommState::CommState() = default;
CommState::~CommState() = default;

// The communicator's engine, made on its first device call: on the GPU of the call's device
// buffers, else (pinned host buffers only) on the stream's.
Status CommState::engine_for(const std::shared_ptr<core::Communicator>& comm,
                             const Placement& where, const char* name,
                             std::shared_ptr<Engine>* out) {
  cudaStream_t stream =
      where.stream != nullptr ? static_cast<cudaStream_t>(where.stream) : cudaStreamLegacy;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!engine_) {
    int device = where.gpu;
    if (device < 0) {
      const bool current = stream == cudaStreamLegacy || stream == cudaStreamPerThread;
      cudaError_t e = current ? cudaGetDevice(&device) : cudaStreamGetDevice(stream, &device);
      if (e != cudaSuccess)
        return cuda_status(
            (std::string(name) + ": the stream is not a usable CUDA stream: cudaStreamGetDevice")
                .c_str(),
            e);
    }
    CIUIC_RETURN_IF_ERROR(Engine::create(comm, device, &engine_).prefix(name));
    has_engine_.store(true, std::memory_order_release);
  }
  if (where.gpu >= 0 && where.gpu != engine_->device())
    return invalid_argument(std::string(name) + ": the buffers are on GPU " +
                            std::to_string(where.gpu) +
                            " but this communicator's CUDA buffers are on GPU " +
                            std::to_string(engine_->device()) + " (a communicator serves one GPU)");
  *out = engine_;
  return Status::Ok();
}

Status CommState::issue(const std::shared_ptr<core::Communicator>& comm,
                        const coll::CollectiveArgs& args, const coll::Buffers& buffers,
                        const Placement& where, std::shared_ptr<DeviceOp>* request) {
  std::shared_ptr<Engine> engine;
  CIUIC_RETURN_IF_ERROR(engine_for(comm, where, coll::collective_name(args.collective), &engine));
  cudaStream_t stream =
      where.stream != nullptr ? static_cast<cudaStream_t>(where.stream) : cudaStreamLegacy;
  std::shared_ptr<DeviceOp> op;
  CIUIC_RETURN_IF_ERROR(engine->issue(args, buffers, stream, &op));
  if (request != nullptr) *request = op;
  return Status::Ok();
}

Status CommState::issue_group(const std::shared_ptr<core::Communicator>& comm,
                              std::vector<GroupPart>& parts) {
  if (parts.empty()) return Status::Ok();
  const void* stream = parts.front().where.stream;
  for (const GroupPart& p : parts)
    if (p.where.stream != stream)
      return invalid_argument(
          "send/recv group: calls on one communicator use two streams; a group's calls on a "
          "communicator must share one stream");
  std::shared_ptr<Engine> engine;
  for (const GroupPart& p : parts)
    CIUIC_RETURN_IF_ERROR(engine_for(comm, p.where, "send/recv group", &engine));
  return engine->issue_group(parts, stream != nullptr
                                        ? static_cast<cudaStream_t>(const_cast<void*>(stream))
                                        : cudaStreamLegacy);
}

Status CommState::flush() {
  // A device call issued before this one (on this thread, or ordered before it) set the
  // flag first; one issued concurrently has no order to keep.
  if (!has_engine_.load(std::memory_order_acquire)) return Status::Ok();
  std::shared_ptr<Engine> engine;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    engine = engine_;
  }
  return engine ? engine->flush() : Status::Ok();
}

void CommState::abort() {
  std::shared_ptr<Engine> engine;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    engine = engine_;
  }
  if (engine) engine->abort();
}

std::shared_ptr<DeviceOp> pending_op() { return std::make_shared<DeviceOp>(); }

void fail(const std::shared_ptr<DeviceOp>& op, const Status& error) {
  std::lock_guard<std::mutex> lock(op->mutex);
  if (op->host_done) return;
  op->result = error;
  op->host_done = true;
  op->cv.notify_all();
}

Status wait(const std::shared_ptr<DeviceOp>& op) {
  {
    std::unique_lock<std::mutex> lock(op->mutex);
    if (op->engine == nullptr) {
      if (op->host_done) return op->result;  // its group failed to issue
      return invalid_argument(
          "ciuic_wait: the request's group is still open (call ciuic_group_end first)");
    }
    // The engine's own waits are bounded, so this is too.
    while (!op->host_done) op->cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  Deadline deadline = op->engine->deadline();
  for (;;) {
    cudaError_t e = cudaEventQuery(op->done);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) return cuda_status("waiting for the stream: cudaEventQuery", e);
    if (deadline.expired())
      return timeout_error("the stream did not finish the operation's copies within " +
                           std::to_string(op->engine->timeout_ms()) + " ms");
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  if (op->ipc) {  // the kernel ran; it may have given up waiting for a peer
    Status kernel = op->engine->sticky_error();
    if (!kernel.ok()) return kernel;
  }
  std::lock_guard<std::mutex> lock(op->mutex);
  return op->result;
}

Status test(const std::shared_ptr<DeviceOp>& op, bool* done) {
  *done = false;
  {
    std::lock_guard<std::mutex> lock(op->mutex);
    if (op->engine == nullptr) {
      if (!op->host_done)
        return invalid_argument(
            "ciuic_test: the request's group is still open (call ciuic_group_end first)");
      *done = true;
      return Status::Ok();
    }
    if (!op->host_done) return Status::Ok();
  }
  cudaError_t e = cudaEventQuery(op->done);
  if (e == cudaErrorNotReady) return Status::Ok();
  *done = true;
  return cuda_status("cudaEventQuery", e);
}

}  // namespace ciuic::cuda

#endif  // CIUIC_HAVE_CUDA
