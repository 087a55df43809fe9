// C API: collectives, point-to-point, requests. Every argument is checked here, before
// anything is queued, so bad input returns a clear error and leaves the communicator
// usable.
#include "api/api_internal.h"
#include "base/enum_bits.h"
#include "coll/schedule.h"
#include "cuda/device.h"
#include "reduce/reduce.h"

namespace ciuic::api {
namespace {

// Large enough for any real buffer, small enough that count * size * nranks cannot
// overflow: a "negative" count passed as size_t lands far above it.
constexpr size_t kMaxBytes = size_t{1} << 48;

struct Call {
  coll::Collective collective;
  const void* sendbuf;
  void* recvbuf;
  size_t count;
  // As the caller passed them: a C caller may hand over any int, and loading a value that
  // is not an enumerator through the enum type would be undefined behaviour here.
  int datatype;
  int op;
  int root;
  int peer;
  ciuic_stream_t stream;
};

Status check(const Call& c, int nranks, int rank, coll::CollectiveArgs* args, coll::Buffers* buffers) {
  const char* name = coll::collective_name(c.collective);
  auto bad = [&](const std::string& what) { return invalid_argument(std::string(name) + ": " + what); };
  if (c.datatype < 0 || c.datatype >= CIUIC_NUM_DATATYPES)
    return bad("datatype " + std::to_string(c.datatype) + " is not a ciuic_datatype_t");
  const auto datatype = static_cast<ciuic_datatype_t>(c.datatype);
  const bool reduces = c.collective == coll::Collective::kAllreduce ||
                       c.collective == coll::Collective::kReduceScatter ||
                       c.collective == coll::Collective::kReduce;
  if (reduces && (c.op < 0 || c.op >= CIUIC_NUM_OPS))
    return bad("op " + std::to_string(c.op) + " is not a ciuic_op_t");
  const size_t elem = reduce::datatype_size(datatype);
  const bool per_rank_blocks = c.collective == coll::Collective::kAllgather ||
                               c.collective == coll::Collective::kReduceScatter ||
                               c.collective == coll::Collective::kAlltoall;
  const size_t factor = per_rank_blocks ? static_cast<size_t>(nranks) : 1;
  if (c.count > kMaxBytes / elem / factor)
    return bad("count " + std::to_string(c.count) +
               " is too large (a negative value converted to size_t?)");
  const bool rooted = c.collective == coll::Collective::kBroadcast || c.collective == coll::Collective::kReduce;
  if (rooted && (c.root < 0 || c.root >= nranks))
    return bad("root " + std::to_string(c.root) + " is outside [0, " + std::to_string(nranks) + ")");
  const bool p2p = c.collective == coll::Collective::kSend || c.collective == coll::Collective::kRecv;
  if (p2p && (c.peer < 0 || c.peer >= nranks))
    return bad("peer " + std::to_string(c.peer) + " is outside [0, " + std::to_string(nranks) + ")");
  if (p2p && c.peer == rank) return bad("a rank cannot send to or receive from itself");

  const bool in_place_token = c.sendbuf == CIUIC_IN_PLACE;
  const size_t bytes = c.count * elem;
  args->collective = c.collective;
  args->rank = rank;
  args->nranks = nranks;
  args->count = c.count;
  args->datatype = datatype;
  args->op = reduces ? static_cast<ciuic_op_t>(c.op) : CIUIC_SUM;
  args->root = c.root;
  args->peer = c.peer;
  buffers->send = in_place_token ? nullptr : c.sendbuf;
  buffers->recv = c.recvbuf;
  if (c.count == 0) return Status::Ok();

  const bool is_root = c.root == rank;
  // Which buffers must be real, and what counts as in place, per collective.
  bool need_send = true, need_recv = true;
  switch (c.collective) {
    case coll::Collective::kAllreduce:
    case coll::Collective::kAlltoall:
      args->in_place = in_place_token || c.sendbuf == c.recvbuf;
      break;
    case coll::Collective::kAllgather:
      args->in_place = in_place_token ||
                       c.sendbuf == static_cast<const char*>(c.recvbuf) + static_cast<size_t>(rank) * bytes;
      break;
    case coll::Collective::kReduceScatter:
      args->in_place_mpi = in_place_token;
      args->in_place = in_place_token ||
                       c.recvbuf == static_cast<const char*>(c.sendbuf) + static_cast<size_t>(rank) * bytes;
      break;
    case coll::Collective::kBroadcast:
      args->in_place = !is_root || in_place_token || c.sendbuf == c.recvbuf;
      need_send = is_root && !args->in_place;
      break;
    case coll::Collective::kReduce:
      args->in_place = in_place_token || c.sendbuf == c.recvbuf;
      need_recv = is_root;
      break;
    case coll::Collective::kSend: need_recv = false; break;
    case coll::Collective::kRecv: need_send = false; break;
    case coll::Collective::kBarrier: need_send = need_recv = false; break;
  }
  if (args->in_place) need_send = false;
  if (need_send && c.sendbuf == nullptr) return bad("sendbuf is NULL");
  if (need_recv && c.recvbuf == nullptr) return bad("recvbuf is NULL");
  if (c.collective == coll::Collective::kReduce && !is_root && args->in_place && c.recvbuf == nullptr)
    return bad("in place on a non-root rank needs recvbuf (it holds the input)");
  return Status::Ok();
}

// Send/recv on CUDA streams between ciuic_group_start and ciuic_group_end (per thread, as
// NCCL's groups): collected here, issued together by the outermost ciuic_group_end.
struct Grouped {
  std::shared_ptr<ciuic_comm> handle;
  std::shared_ptr<core::Communicator> comm;
  cuda::CommState::GroupPart part;
};
thread_local int g_group_depth = 0;
thread_local std::vector<Grouped> g_grouped;

ciuic_result_t issue_groups() {
  std::vector<Grouped> calls;
  calls.swap(g_grouped);
  ciuic_result_t result = CIUIC_SUCCESS;
  std::vector<bool> taken(calls.size(), false);
  for (size_t i = 0; i < calls.size(); ++i) {
    if (taken[i]) continue;
    std::vector<cuda::CommState::GroupPart> parts;  // this communicator's, in issue order
    for (size_t j = i; j < calls.size(); ++j) {
      if (calls[j].handle != calls[i].handle) continue;
      parts.push_back(calls[j].part);
      taken[j] = true;
    }
    Status s = calls[i].handle->cuda.issue_group(calls[i].comm, parts);
    if (s.ok()) continue;
    for (auto& part : parts)
      if (part.op) cuda::fail(part.op, s);
    ciuic_result_t code = record_for(calls[i].handle, s);
    if (result == CIUIC_SUCCESS) result = code;
  }
  return result;
}

ciuic_result_t issue(ciuic_comm* handle, const Call& call, ciuic_request_t* request) {
  std::shared_ptr<ciuic_comm> h;
  Status s = lookup(handle, &h);
  if (!s.ok()) return record(nullptr, s);
  std::shared_ptr<core::Communicator> comm = h->impl;
  if (!comm) return record_for(h, invalid_argument("the communicator was destroyed"));
  coll::CollectiveArgs args;
  coll::Buffers buffers;
  s = check(call, comm->nranks(), comm->rank(), &args, &buffers);
  if (!s.ok()) return record_for(h, s);
  // CUDA memory or a stream: the communicator's stream engine runs it (src/cuda).
  cuda::Placement where;
  s = cuda::place(args, buffers, call.stream, &where);
  if (!s.ok()) return record_for(h, s);
  if (where.device) {
    const bool p2p = call.collective == coll::Collective::kSend || call.collective == coll::Collective::kRecv;
    if (p2p && g_group_depth > 0) {  // collected: ciuic_group_end issues the group
      std::shared_ptr<cuda::DeviceOp> op = request ? cuda::pending_op() : nullptr;
      g_grouped.push_back({h, comm, cuda::CommState::GroupPart{args, buffers, where, op}});
      if (request != nullptr) *request = new ciuic_request{comm, h, nullptr, op};
      return CIUIC_SUCCESS;
    }
    std::shared_ptr<cuda::DeviceOp> device_op;
    s = h->cuda.issue(comm, args, buffers, where, request ? &device_op : nullptr);
    if (!s.ok()) return record_for(h, s);
    if (request != nullptr) *request = new ciuic_request{comm, h, nullptr, device_op};
    return CIUIC_SUCCESS;
  }
  // Device operations issued earlier reach the communicator first: issue order holds.
  s = h->cuda.flush();
  if (!s.ok()) return record_for(h, s);
  if (request == nullptr) return record_for(h, comm->run(args, buffers));
  *request = nullptr;
  std::shared_ptr<core::Operation> op;
  s = comm->submit(args, buffers, &op);
  if (!s.ok()) return record_for(h, s);
  *request = new ciuic_request{comm, h, op, nullptr};
  return CIUIC_SUCCESS;
}

ciuic_result_t issue_nonblocking(ciuic_comm* handle, const Call& call, ciuic_request_t* request) {
  if (request == nullptr) return record(handle, invalid_argument("request (output) is NULL"));
  *request = nullptr;  // a rejected call leaves nothing to wait on, like init and split
  return issue(handle, call, request);
}

using C = coll::Collective;

}  // namespace
}  // namespace ciuic::api

using namespace ciuic;
using api::C;
using api::Call;
using ciuic::enum_bits;


extern "C" {

ciuic_result_t ciuic_allreduce(const void* sendbuf, void* recvbuf, size_t count,
                               ciuic_datatype_t datatype, ciuic_op_t op, ciuic_comm_t comm,
                               ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kAllreduce, sendbuf, recvbuf, count, enum_bits(&datatype), enum_bits(&op), 0, -1, stream}, nullptr);
}
ciuic_result_t ciuic_allgather(const void* sendbuf, void* recvbuf, size_t count,
                               ciuic_datatype_t datatype, ciuic_comm_t comm, ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kAllgather, sendbuf, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, 0, -1, stream}, nullptr);
}
ciuic_result_t ciuic_reduce_scatter(const void* sendbuf, void* recvbuf, size_t count,
                                    ciuic_datatype_t datatype, ciuic_op_t op, ciuic_comm_t comm,
                                    ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kReduceScatter, sendbuf, recvbuf, count, enum_bits(&datatype), enum_bits(&op), 0, -1, stream}, nullptr);
}
ciuic_result_t ciuic_broadcast(const void* sendbuf, void* recvbuf, size_t count,
                               ciuic_datatype_t datatype, int root, ciuic_comm_t comm,
                               ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kBroadcast, sendbuf, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, root, -1, stream}, nullptr);
}
ciuic_result_t ciuic_reduce(const void* sendbuf, void* recvbuf, size_t count,
                            ciuic_datatype_t datatype, ciuic_op_t op, int root, ciuic_comm_t comm,
                            ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kReduce, sendbuf, recvbuf, count, enum_bits(&datatype), enum_bits(&op), root, -1, stream}, nullptr);
}
ciuic_result_t ciuic_alltoall(const void* sendbuf, void* recvbuf, size_t count,
                              ciuic_datatype_t datatype, ciuic_comm_t comm, ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kAlltoall, sendbuf, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, 0, -1, stream}, nullptr);
}
ciuic_result_t ciuic_send(const void* sendbuf, size_t count, ciuic_datatype_t datatype, int peer,
                          ciuic_comm_t comm, ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kSend, sendbuf, nullptr, count, enum_bits(&datatype), CIUIC_SUM, 0, peer, stream}, nullptr);
}
ciuic_result_t ciuic_recv(void* recvbuf, size_t count, ciuic_datatype_t datatype, int peer,
                          ciuic_comm_t comm, ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kRecv, nullptr, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, 0, peer, stream}, nullptr);
}
ciuic_result_t ciuic_barrier(ciuic_comm_t comm, ciuic_stream_t stream) {
  return api::issue(comm, Call{C::kBarrier, nullptr, nullptr, 0, CIUIC_UINT8, CIUIC_SUM, 0, -1, stream}, nullptr);
}

ciuic_result_t ciuic_iallreduce(const void* sendbuf, void* recvbuf, size_t count,
                                ciuic_datatype_t datatype, ciuic_op_t op, ciuic_comm_t comm,
                                ciuic_stream_t stream, ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kAllreduce, sendbuf, recvbuf, count, enum_bits(&datatype), enum_bits(&op), 0, -1, stream}, request);
}
ciuic_result_t ciuic_iallgather(const void* sendbuf, void* recvbuf, size_t count,
                                ciuic_datatype_t datatype, ciuic_comm_t comm, ciuic_stream_t stream,
                                ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kAllgather, sendbuf, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, 0, -1, stream}, request);
}
ciuic_result_t ciuic_ireduce_scatter(const void* sendbuf, void* recvbuf, size_t count,
                                     ciuic_datatype_t datatype, ciuic_op_t op, ciuic_comm_t comm,
                                     ciuic_stream_t stream, ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kReduceScatter, sendbuf, recvbuf, count, enum_bits(&datatype), enum_bits(&op), 0, -1, stream}, request);
}
ciuic_result_t ciuic_ibroadcast(const void* sendbuf, void* recvbuf, size_t count,
                                ciuic_datatype_t datatype, int root, ciuic_comm_t comm,
                                ciuic_stream_t stream, ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kBroadcast, sendbuf, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, root, -1, stream}, request);
}
ciuic_result_t ciuic_ireduce(const void* sendbuf, void* recvbuf, size_t count,
                             ciuic_datatype_t datatype, ciuic_op_t op, int root, ciuic_comm_t comm,
                             ciuic_stream_t stream, ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kReduce, sendbuf, recvbuf, count, enum_bits(&datatype), enum_bits(&op), root, -1, stream}, request);
}
ciuic_result_t ciuic_ialltoall(const void* sendbuf, void* recvbuf, size_t count,
                               ciuic_datatype_t datatype, ciuic_comm_t comm, ciuic_stream_t stream,
                               ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kAlltoall, sendbuf, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, 0, -1, stream}, request);
}
ciuic_result_t ciuic_isend(const void* sendbuf, size_t count, ciuic_datatype_t datatype, int peer,
                           ciuic_comm_t comm, ciuic_stream_t stream, ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kSend, sendbuf, nullptr, count, enum_bits(&datatype), CIUIC_SUM, 0, peer, stream}, request);
}
ciuic_result_t ciuic_irecv(void* recvbuf, size_t count, ciuic_datatype_t datatype, int peer,
                           ciuic_comm_t comm, ciuic_stream_t stream, ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kRecv, nullptr, recvbuf, count, enum_bits(&datatype), CIUIC_SUM, 0, peer, stream}, request);
}
ciuic_result_t ciuic_ibarrier(ciuic_comm_t comm, ciuic_stream_t stream, ciuic_request_t* request) {
  return api::issue_nonblocking(comm, Call{C::kBarrier, nullptr, nullptr, 0, CIUIC_UINT8, CIUIC_SUM, 0, -1, stream}, request);
}

ciuic_result_t ciuic_group_start(void) {
  ++api::g_group_depth;
  return CIUIC_SUCCESS;
}

ciuic_result_t ciuic_group_end(void) {
  if (api::g_group_depth == 0)
    return api::record(nullptr, invalid_argument("ciuic_group_end: no group is open on this thread "
                                                 "(ciuic_group_start was not called)"));
  if (--api::g_group_depth > 0) return CIUIC_SUCCESS;
  return api::issue_groups();
}

ciuic_result_t ciuic_wait(ciuic_request_t* request) {
  if (request == nullptr || *request == nullptr)
    return api::record(nullptr, invalid_argument("ciuic_wait: the request is NULL"));
  ciuic_request* r = *request;
  Status s = r->device_op ? cuda::wait(r->device_op) : r->comm->wait(r->op);
  ciuic_result_t code = api::record_for(r->handle, s);
  delete r;
  *request = nullptr;
  return code;
}

ciuic_result_t ciuic_test(ciuic_request_t* request, int* done) {
  if (request == nullptr || *request == nullptr || done == nullptr)
    return api::record(nullptr, invalid_argument("ciuic_test: the request or done is NULL"));
  ciuic_request* r = *request;
  if (r->device_op) {
    bool finished = false;
    Status s = cuda::test(r->device_op, &finished);
    if (!s.ok()) return api::record_for(r->handle, s);
    *done = finished ? 1 : 0;
    return finished ? ciuic_wait(request) : CIUIC_SUCCESS;
  }
  {
    std::lock_guard<std::mutex> lock(r->op->mutex);
    *done = r->op->finished ? 1 : 0;
  }
  if (!*done) {
    r->comm->kick(r->op);  // a queued send/recv starts once someone asks about it
    return CIUIC_SUCCESS;
  }
  return ciuic_wait(request);
}

}  // extern "C"
