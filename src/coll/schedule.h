// A collective, for one rank, as data: an ordered list of steps over byte ranges of the
// send, receive and scratch buffers. Algorithms build schedules; one executor runs them;
// tests (and the simulator) run the same schedules without a network.
//
// Step order defines matching: the k-th Send from rank a to rank b meets the k-th Recv
// on b from a, and their sizes must agree. Dependencies say which earlier steps must be
// complete before a step may start; everything else may run concurrently (pipelining).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ciuic/ciuic.h"

namespace ciuic::coll {

struct TransportCosts;  // coll/tuner.h

enum class Buffer : uint8_t { kSend = 0, kRecv = 1, kScratch = 2 };

struct BufferRange {
  Buffer buffer = Buffer::kRecv;
  uint16_t set = 0;   // whose buffers: point-to-point operations run as one group
  size_t offset = 0;  // bytes
};

enum class StepKind : uint8_t {
  kSend,     // bytes from src to peer
  kRecv,     // bytes from peer into dst
  kReduce,   // dst = a (op) b, over bytes
  kCopy,     // dst = src (memmove), over bytes
  kAverage,  // dst /= nranks (the end of CIUIC_AVG)
};

struct Step {
  StepKind kind = StepKind::kCopy;
  int peer = -1;          // kSend/kRecv: rank in the communicator
  BufferRange dst;        // kRecv, kReduce, kCopy, kAverage
  BufferRange src;        // kSend, kCopy; operand a of kReduce
  BufferRange src2;       // operand b of kReduce
  size_t bytes = 0;
  uint32_t dep_begin = 0;  // dependencies: Schedule::deps[dep_begin, dep_begin + dep_count)
  uint32_t dep_count = 0;
};

enum class Collective : uint8_t {
  kAllreduce, kAllgather, kReduceScatter, kBroadcast, kReduce, kAlltoall, kSend, kRecv, kBarrier
};
const char* collective_name(Collective c);
const char* buffer_name(Buffer b);  // "send", "recv", "scratch"

struct Schedule {
  std::string algorithm;  // "ring", "chain", "pairwise", "dissemination", "direct"
  Collective collective = Collective::kAllreduce;
  int rank = 0;
  int nranks = 1;
  ciuic_datatype_t datatype = CIUIC_UINT8;
  ciuic_op_t op = CIUIC_SUM;
  size_t scratch_bytes = 0;
  std::vector<Step> steps;
  std::vector<uint32_t> deps;

  // Appends a step depending on `after`; returns its index.
  uint32_t add(Step step, std::initializer_list<uint32_t> after = {});
  uint32_t add(Step step, const std::vector<uint32_t>& after);
  // One line per step, for tests and `--dump-schedule`.
  std::string to_string() const;

  // Derived once by finalize() (build_schedule calls it), so that running a cached
  // schedule allocates next to nothing: who waits for each step (CSR), and each peer's
  // sends and receives in order.
  struct PeerSteps {
    int peer = -1;
    std::vector<uint32_t> sends;
    std::vector<uint32_t> recvs;
  };
  std::vector<uint32_t> dependents;
  std::vector<uint32_t> dependents_begin;  // steps.size() + 1 entries
  std::vector<PeerSteps> peers;
  void finalize();
};

// What a builder needs to know about one call.
struct CollectiveArgs {
  Collective collective = Collective::kAllreduce;
  int rank = 0;
  int nranks = 1;
  size_t count = 0;  // elements, as the C API defines it per collective
  ciuic_datatype_t datatype = CIUIC_FLOAT32;
  ciuic_op_t op = CIUIC_SUM;
  int root = 0;      // broadcast/reduce
  int peer = -1;     // send/recv
  // In place: the input already sits where the API says (see docs/api.md); for
  // reduce_scatter `in_place_mpi` means CIUIC_IN_PLACE (input = recvbuf, result at its
  // start) as opposed to NCCL's recvbuf == sendbuf + rank*count.
  bool in_place = false;
  bool in_place_mpi = false;
  size_t chunk_bytes = 1 << 20;  // pipelining granularity
  int scratch_slots = 16;        // chunk-sized scratch buffers a pipeline cycles through
  // The torus algorithms' grid (product = nranks); empty: CIUIC_TORUS_DIMS, or else the
  // most balanced three factors of nranks.
  std::vector<int> torus_dims;
  // Which node (host) each rank sits on, numbered 0..nodes-1 in order of first appearance;
  // null when unknown. The hierarchical algorithms group ranks by it. Shared, because
  // every operation of a communicator carries the same table.
  std::shared_ptr<const std::vector<int>> node_of_rank;
  // What the communicator's transports report of themselves (the tuner's links where
  // nothing else gives them); null when unknown.
  std::shared_ptr<const TransportCosts> transports;
};

}  // namespace ciuic::coll
