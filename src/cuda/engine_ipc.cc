// The stream engine's same-node CUDA IPC path: when it applies, how a call is enqueued, and
// the exchange of buffers for a direct operation (docs/gpu.md, "Same-node CUDA IPC").
#include "cuda/engine.h"

#if CIUIC_HAVE_CUDA

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "base/config.h"
#include "base/log.h"
#include "cuda/ipc_kernels.h"
#include "reduce/reduce.h"

namespace ciuic::cuda {
namespace {

const config::StringParam kIpc{
    "CIUIC_CUDA_IPC", "auto",
    "CUDA buffers between ranks of one node: auto (CUDA IPC when every rank of the "
    "communicator sits on one node, else staging through host memory), off (always staging) "
    "or require (fail a call that cannot use CUDA IPC, saying why); the same on every rank"};
const config::IntParam kDirectBytes{
    "CIUIC_CUDA_IPC_DIRECT_BYTES", 64 << 20,
    "CUDA IPC: from this many input bytes per rank on, a collective exchanges its buffers' "
    "addresses and reads and writes the peers' buffers in place; below it, it copies through "
    "the ranks' windows and needs nothing from the host; the same on every rank"};

constexpr uint32_t kOpMagic = 0x4349504f;  // "CIPO"

bool ipc_collective(coll::Collective c, IpcCollective* out) {
  switch (c) {
    case coll::Collective::kAllreduce:
      *out = IpcCollective::kAllreduce;
      return true;
    case coll::Collective::kReduce:
      *out = IpcCollective::kReduce;
      return true;
    case coll::Collective::kReduceScatter:
      *out = IpcCollective::kReduceScatter;
      return true;
    case coll::Collective::kAllgather:
      *out = IpcCollective::kAllgather;
      return true;
    case coll::Collective::kBroadcast:
      *out = IpcCollective::kBroadcast;
      return true;
    default:
      return false;
  }
}

Status cuda_call(const char* what, cudaError_t e) {
  if (e == cudaSuccess) return Status::Ok();
  return system_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" +
                      cudaGetErrorString(e) + ")");
}

}  // namespace

Status Engine::ipc_serves(const coll::CollectiveArgs& args, const char* name, bool* serves) {
  *serves = false;
  IpcCollective which;
  if (!ipc_collective(args.collective, &which)) return Status::Ok();
  const std::string mode = kIpc.get();
  if (ipc_state_ == IpcState::kUndecided) {
    const int n = comm_->nranks();
    std::string why;
    if (mode == "off" || mode == "0") {
      why = "CIUIC_CUDA_IPC=" + mode;
    } else if (n < 2) {
      why = "the communicator has one rank";
    } else if (n > kIpcMaxRanks) {
      why = "the communicator has " + std::to_string(n) + " ranks on its node (CUDA IPC serves " +
            std::to_string(kIpcMaxRanks) + " at most)";
    } else {
      const auto nodes = comm_->node_of_rank();
      if (!nodes || nodes->size() != static_cast<size_t>(n)) {
        why = "the ranks' nodes are not known";
      } else {
        const int node_count = *std::max_element(nodes->begin(), nodes->end()) + 1;
        if (node_count > 1)
          why = "the ranks sit on " + std::to_string(node_count) +
                " nodes (by host name, CIUIC_HOSTID or CIUIC_LOCAL_SIZE)";
      }
    }
    if (why.empty()) {
      if (mode != "auto" && mode != "require")
        CIUIC_LOG_WARN(log::kInit, "CIUIC_CUDA_IPC=%s is not auto, off or require: using auto",
                       mode.c_str());
      // A collective of its own on the communicator: the engine's thread must have run
      // everything queued before it, so that every rank sees the same order.
      CIUIC_RETURN_IF_ERROR(flush());
      CIUIC_RETURN_IF_ERROR(sticky_error());
      std::unique_ptr<IpcPeers> peers;
      Status s = IpcPeers::create(*comm_, device_, &peers, &why);
      if (!s.ok()) {
        ipc_state_ = IpcState::kOff;
        ipc_why_not_ = s.message();
        s.prefix(name);
        fail(s, false);
        return s;
      }
      if (peers) {
        ipc_ = std::move(peers);
        ipc_words_.store(ipc_->host_words());
        ipc_descriptor_users_.assign(IpcPeers::kDescriptors, nullptr);
        ipc_state_ = IpcState::kOn;
        CIUIC_LOG_INFO(log::kInit,
                       "rank %d: CUDA buffers between the ranks of this node go "
                       "through CUDA IPC: %s",
                       rank_, ipc_->summary().c_str());
      }
    }
    if (ipc_state_ != IpcState::kOn) {
      ipc_state_ = IpcState::kOff;
      ipc_why_not_ = why;
      CIUIC_LOG_INFO(log::kInit,
                     "rank %d: CUDA buffers go through pinned staging, not CUDA IPC: %s", rank_,
                     why.c_str());
    }
  }
  if (ipc_state_ == IpcState::kOff && mode == "require")
    return unsupported(std::string(name) +
                       ": CIUIC_CUDA_IPC=require, but CUDA IPC cannot serve "
                       "this communicator: " +
                       ipc_why_not_);
  *serves = ipc_state_ == IpcState::kOn;
  return Status::Ok();
}

Status Engine::ipc_error() {
  IpcHostWords* words = ipc_words_.load();
  if (words == nullptr) return Status::Ok();
  const uint32_t e = __atomic_load_n(&words->error, __ATOMIC_ACQUIRE);
  if (e == 0) return Status::Ok();
  const uint32_t kind = e >> 8, peer = e & 0xff;
  if (kind == kIpcErrorTimeout)
    return timeout_error("a collective on the CUDA IPC path, rank " + std::to_string(rank_) +
                         ": rank " + std::to_string(peer) + "'s kernel did not arrive within " +
                         std::to_string(timeout_ms()) +
                         " ms (its stream never reached the operation, or the rank is gone)");
  return aborted_error(
      "a collective on the CUDA IPC path, rank " + std::to_string(rank_) +
      ": gave up waiting for rank " + std::to_string(peer) +
      (aborted_.load() ? ": the communicator was aborted" : ": an earlier operation had failed"));
}

Status Engine::issue_ipc(const coll::CollectiveArgs& args, const coll::Buffers& user,
                         cudaStream_t stream, std::shared_ptr<DeviceOp>* out) {
  const char* name = coll::collective_name(args.collective);
  prune_in_flight();
  auto op = std::make_shared<DeviceOp>();
  op->engine = this;
  op->pool = pool_;
  op->ipc = true;
  CIUIC_RETURN_IF_ERROR(pool_->get(&op->done).prefix(name));
  // One IPC operation at a time per rank, in issue order, whatever the streams: the flags
  // and windows assume it (as NCCL orders a communicator's operations).
  if (ipc_last_ && ipc_last_stream_ != stream)
    CIUIC_RETURN_IF_ERROR(
        cuda_call("cudaStreamWaitEvent", cudaStreamWaitEvent(stream, ipc_last_->done, 0))
            .prefix(name));

  const size_t elem = reduce::datatype_size(args.datatype);
  const int n = comm_->nranks();
  IpcLaunch k;
  ipc_collective(args.collective, &k.collective);
  Status s;
  bool direct = false;
  std::unique_ptr<IpcExchange> exchange;
  if (args.count > 0) {
    const Layout l = layout_of(args, user);
    const bool reduces = args.collective == coll::Collective::kAllreduce ||
                         args.collective == coll::Collective::kReduce ||
                         args.collective == coll::Collective::kReduceScatter;
    const size_t rows = args.collective == coll::Collective::kReduceScatter ? n : 1;
    k.datatype = args.datatype;
    k.op = reduces ? args.op : CIUIC_SUM;
    k.rank = rank_;
    k.nranks = n;
    k.root = args.root;
    k.count = args.count;
    k.in = l.in;
    k.out = l.out;
    k.slot_bytes = ipc_->slot_bytes();
    k.chunk = std::max(kIpcAlign, k.slot_bytes / (rows * elem) / kIpcAlign * kIpcAlign);
    for (int q = 0; q < n; ++q) {
      k.windows[q] = ipc_->windows_of(q);
      k.peer_flags[q] = ipc_->flags_of(q);
    }
    k.flags = ipc_->flags();
    k.base = ++ipc_seq_ << 32;
    // From here this rank has taken the operation's number: a failure must break the
    // communicator (the peers' kernels would wait for this one).
    auto broken = [&](Status error) {
      error.prefix(std::string(name) + " on rank " + std::to_string(rank_));
      fail(error, true);
      return error;
    };
    k.host = ipc_->host_words_device();
    k.timeout_ns = static_cast<uint64_t>(std::max<int64_t>(timeout_ms(), 1)) * 1000000;
    direct =
        rows * args.count * elem >= static_cast<size_t>(std::max<int64_t>(kDirectBytes.get(), 1));
    const size_t lanes = 16 / elem;
    k.blocks = direct ? ipc_->blocks()
                      : static_cast<int>(std::clamp<size_t>(
                            (std::min(args.count, k.chunk) + kIpcThreads * lanes * 2 - 1) /
                                (kIpcThreads * lanes * 2),
                            1, static_cast<size_t>(ipc_->blocks())));
    if (direct) {
      // The ranks' buffers are exchanged by the engine's thread; the kernel waits for them
      // in a descriptor, which the stream waits for.
      const size_t slot = ipc_seq_ % IpcPeers::kDescriptors;
      std::shared_ptr<DeviceOp>& previous = ipc_descriptor_users_[slot];
      Deadline deadline = Deadline::after_ms(timeout_ms());
      while (previous && cudaEventQuery(previous->done) == cudaErrorNotReady) {
        if (deadline.expired())
          return broken(timeout_error(
              "the CUDA IPC operation issued " + std::to_string(IpcPeers::kDescriptors) +
              " calls earlier did not finish within " + std::to_string(timeout_ms()) + " ms"));
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      previous.reset();
      ipc_->descriptor(slot)->mode = kIpcModeUnset;
      exchange = std::make_unique<IpcExchange>();
      exchange->mine.magic = kOpMagic;
      exchange->mine.seq = ipc_seq_;
      exchange->mine.windowed =
          args.collective == coll::Collective::kReduceScatter && args.in_place_mpi;
      Status described = ipc_->describe(l.in, &exchange->mine.in);
      if (described.ok()) described = ipc_->describe(l.out, &exchange->mine.out);
      if (!described.ok()) return broken(described);
      exchange->descriptor = slot;
      exchange->release = next_release_ + 1;
      Status waits = enqueue_wait(stream, exchange->release);
      if (!waits.ok()) return broken(waits);
      next_release_ = exchange->release;  // the stream waits for it now: a job must release it
      previous = op;
      k.descriptor = ipc_->descriptor_device(slot);
    }
    s = launch_ipc(k, stream);
  }
  if (s.ok()) s = cuda_call("cudaEventRecord", cudaEventRecord(op->done, stream));
  if (!s.ok() && !direct) {
    s.prefix(std::string(name) + " on rank " + std::to_string(rank_));
    if (args.count > 0) fail(s, true);  // the peers' kernels wait for this one
    return s;
  }
  in_flight_.push_back(op);
  ipc_last_ = op;
  ipc_last_stream_ = stream;
  if (!s.ok()) {
    // The peers' kernels wait for this rank's: tell them through the communicator.
    s.prefix(std::string(name) + " on rank " + std::to_string(rank_));
    fail(s, true);
  }
  if (direct) {
    Job job;
    job.op = op;
    job.ipc = std::move(exchange);
    job.failed_to_enqueue = !s.ok();
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      op->seq = next_seq_++;
      queue_.push_back(std::move(job));
    }
    queue_cv_.notify_all();
  } else {
    finish(*op, s);
  }
  if (out != nullptr) *out = op;
  return s;
}

void Engine::run_ipc_exchange(Job& job) {
  IpcExchange& ex = *job.ipc;
  IpcDescriptor* d = ipc_->descriptor(ex.descriptor);
  Status s = sticky_error();
  bool local = true;
  std::vector<char> all;
  if (s.ok()) {
    s = ipc_allgather(*comm_, &ex.mine, sizeof(ex.mine), &all);
    local = s.ok();
  }
  const int n = comm_->nranks();
  std::vector<IpcOpRecord> records(static_cast<size_t>(n));
  for (int q = 0; q < n && s.ok(); ++q) {
    std::memcpy(&records[q], all.data() + static_cast<size_t>(q) * sizeof(IpcOpRecord),
                sizeof(IpcOpRecord));
    if (records[q].magic != kOpMagic || records[q].seq != ex.mine.seq)
      s = internal_error("CUDA IPC: rank " + std::to_string(q) + " is at another operation (" +
                         std::to_string(records[q].seq) + ", this rank at " +
                         std::to_string(ex.mine.seq) +
                         "): did every rank call the same collectives on CUDA buffers?");
  }
  uint32_t mode = kIpcModeSkip;
  if (s.ok()) {
    bool windowed = false;
    for (int q = 0; q < n; ++q)
      windowed = windowed || records[q].windowed != 0 || !ipc_->usable_by_all(q, records[q].in) ||
                 !ipc_->usable_by_all(q, records[q].out);
    if (windowed) {
      mode = kIpcModeWindowed;
    } else {
      for (int q = 0; q < n && s.ok(); ++q) {
        s = ipc_->open(q, records[q].in, job.op, &d->in[q]);
        if (s.ok()) s = ipc_->open(q, records[q].out, job.op, &d->out[q]);
      }
      mode = kIpcModeDirect;
    }
  }
  if (!s.ok()) {
    mode = kIpcModeSkip;
    s.prefix("a collective on the CUDA IPC path, rank " + std::to_string(rank_));
    fail(s, local);
  }
  d->mode = mode;
  release(ex.release);
  finish(*job.op, s);
}

}  // namespace ciuic::cuda

#endif  // CIUIC_HAVE_CUDA
