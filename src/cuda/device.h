// GPU buffers in the C API: what src/api asks of the CUDA layer. docs/gpu.md has the design.
//
// A call whose buffers are CUDA memory, or that names a stream, goes to its communicator's
// stream engine (engine.h, CUDA builds): the call enqueues copies into pinned staging and
// stream waits on the caller's stream and returns; the engine's thread runs the host
// collective over the staging buffers through the same Communicator, in issue order, and
// then lets the stream go on. In a CPU-only build (or with CIUIC_CUDA=0) such a call fails
// with CIUIC_ERR_UNSUPPORTED saying so.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "base/status.h"
#include "ciuic/ciuic.h"
#include "coll/executor.h"
#include "coll/schedule.h"
#include "cuda/driver.h"

namespace ciuic::core {
class Communicator;
}

namespace ciuic::cuda {

class Engine;
struct DeviceOp;

// True in builds with CUDA (and CIUIC_CUDA not 0).
bool cuda_enabled();

// Which parts of the user's buffers one call reads and writes, as blocks ("rows") of
// `count` elements that lie back to back in the user's buffer.
struct Layout {
  const char* in = nullptr;  // first input block (nullptr: no input on this rank)
  int in_rows = 0;
  int in_row = 0;       // the staging row the first input block goes to
  char* out = nullptr;  // first output block (nullptr: nothing written on this rank)
  int out_rows = 0;
  int out_row = 0;  // the staging row the first output block comes from
  int rows = 1;     // rows a staging slot holds (1 or nranks)
};
// For arguments that the API's check() accepted. Nothing when count is 0.
Layout layout_of(const coll::CollectiveArgs& args, const coll::Buffers& buffers);

// Where one call runs.
struct Placement {
  bool device = false;     // the stream engine runs it (else the host path, as before)
  void* stream = nullptr;  // the caller's stream; NULL with CUDA buffers: the legacy default stream
  int gpu = -1;            // the GPU of the call's device or managed buffers, -1 if none
};
// Decides it from the stream and the buffers' memory: errors for a CPU-only build, for
// host and device buffers mixed without a stream, for buffers on two GPUs.
Status place(const coll::CollectiveArgs& args, const coll::Buffers& buffers, ciuic_stream_t stream,
             Placement* out);

// A communicator handle's CUDA state: its engine, made by the first device call.
class CommState {
 public:
  CommState();
  ~CommState();  // drains the engine: queued operations finish (or fail fast if broken)
  CommState(const CommState&) = delete;
  CommState& operator=(const CommState&) = delete;

  // Enqueues one operation on the placement's stream and returns. `request` (nullptr for
  // blocking calls) gets what ciuic_wait/ciuic_test complete.
  Status issue(const std::shared_ptr<core::Communicator>& comm, const coll::CollectiveArgs& args,
               const coll::Buffers& buffers, const Placement& where,
               std::shared_ptr<DeviceOp>* request);
  // One send/recv of a group (ciuic_group_start/end). `op`: its request's, or nullptr.
  struct GroupPart {
    coll::CollectiveArgs args;
    coll::Buffers buffers;
    Placement where;
    std::shared_ptr<DeviceOp> op;
  };
  // Enqueues a group's send/recv on their (one) stream as one operation: every send's input
  // is staged, then all run together, then every receive's result is copied out.
  Status issue_group(const std::shared_ptr<core::Communicator>& comm,
                     std::vector<GroupPart>& parts);
  // Before a host operation: every device operation issued earlier has run its host part,
  // so that every rank sees the communicator's operations in the same order.
  Status flush();
  // ciuic_comm_abort: an engine waiting for a stream gives up at once.
  void abort();

 private:
  Status engine_for(const std::shared_ptr<core::Communicator>& comm, const Placement& where,
                    const char* name, std::shared_ptr<Engine>* out);

  std::mutex mutex_;
  std::shared_ptr<Engine> engine_;
  // Set once engine_ exists (it stays until the destructor): a host call on a communicator
  // that never had a device call checks this flag instead of taking mutex_.
  std::atomic<bool> has_engine_{false};
};

// ciuic_wait on a device request: the operation's host part finished and its last copy on
// the stream completed. ciuic_test: the same without blocking.
Status wait(const std::shared_ptr<DeviceOp>& op);
Status test(const std::shared_ptr<DeviceOp>& op, bool* done);
// A request for a send/recv inside an open group: issue_group fills it, fail() ends it.
std::shared_ptr<DeviceOp> pending_op();
void fail(const std::shared_ptr<DeviceOp>& op, const Status& error);

}  // namespace ciuic::cuda
