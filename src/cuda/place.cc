// Which path a call takes: the host path (as before CUDA support) or the stream engine.
#include <string>

#include "base/config.h"
#include "cuda/device.h"
#include "reduce/reduce.h"

namespace ciuic::cuda {
namespace {

const config::BoolParam kCuda{
    "CIUIC_CUDA", true,
    "Serve CUDA buffers and streams (in builds with CUDA). 0: refuse them with "
    "CIUIC_ERR_UNSUPPORTED, as a CPU-only build does"};

#if CIUIC_HAVE_CUDA
constexpr bool kBuiltWithCuda = true;
#else
constexpr bool kBuiltWithCuda = false;
#endif

std::string why_no_cuda() {
  return kBuiltWithCuda ? "CUDA support is switched off (CIUIC_CUDA=0)"
                        : "this build of ciuic has no CUDA support (configured with "
                          "CIUIC_CUDA=OFF or without the CUDA toolkit)";
}

}  // namespace

bool cuda_enabled() { return kBuiltWithCuda && kCuda.get(); }

Layout layout_of(const coll::CollectiveArgs& a, const coll::Buffers& b) {
  Layout l;
  if (a.count == 0) return l;
  const size_t block = a.count * reduce::datatype_size(a.datatype);
  const int n = a.nranks;
  const bool root = a.rank == a.root;
  auto input = [&](const void* p) { return static_cast<const char*>(p); };
  switch (a.collective) {
    case coll::Collective::kAllreduce:
      l.in = input(a.in_place ? b.recv : b.send);
      l.out = static_cast<char*>(b.recv);
      l.in_rows = l.out_rows = 1;
      break;
    case coll::Collective::kBroadcast:
      if (root) l.in = input(a.in_place ? b.recv : b.send);
      if (!(root && a.in_place)) l.out = static_cast<char*>(b.recv);
      l.in_rows = l.out_rows = 1;
      break;
    case coll::Collective::kReduce:
      l.in = input(a.in_place ? b.recv : b.send);
      if (root) l.out = static_cast<char*>(b.recv);
      l.in_rows = l.out_rows = 1;
      break;
    case coll::Collective::kAllgather:
      l.in = a.in_place ? input(b.recv) + static_cast<size_t>(a.rank) * block : input(b.send);
      l.in_rows = 1;
      l.in_row = a.rank;
      l.out = static_cast<char*>(b.recv);
      l.out_rows = l.rows = n;
      break;
    case coll::Collective::kReduceScatter:
      l.in = input(a.in_place_mpi ? b.recv : b.send);
      l.in_rows = l.rows = n;
      l.out = static_cast<char*>(b.recv);
      l.out_rows = 1;
      l.out_row = a.rank;
      break;
    case coll::Collective::kAlltoall:
      l.in = input(a.in_place ? b.recv : b.send);
      l.out = static_cast<char*>(b.recv);
      l.in_rows = l.out_rows = l.rows = n;
      break;
    case coll::Collective::kSend:
      l.in = input(b.send);
      l.in_rows = 1;
      break;
    case coll::Collective::kRecv:
      l.out = static_cast<char*>(b.recv);
      l.out_rows = 1;
      break;
    case coll::Collective::kBarrier:
      break;
  }
  if (l.in == nullptr) l.in_rows = 0;
  if (l.out == nullptr) l.out_rows = 0;
  return l;
}

Status place(const coll::CollectiveArgs& args, const coll::Buffers& buffers, ciuic_stream_t stream,
             Placement* out) {
  *out = Placement{};
  out->stream = stream;
  // One look at the loader for the whole call. Without libcuda.so.1 there is no CUDA
  // memory: host buffers and no stream is the host path, with nothing more to ask.
  const DriverApi* driver = loaded_driver();
  if (driver == nullptr && stream == nullptr) return Status::Ok();
  const char* name = coll::collective_name(args.collective);
  const Layout l = layout_of(args, buffers);
  struct Seen {
    const char* what;
    const void* ptr;
    PointerInfo info;
  } seen[2] = {{"the input buffer", l.in, {}}, {"the output buffer", l.out, {}}};
  bool any_cuda = false, any_pageable = false;
  for (Seen& s : seen) {
    if (s.ptr == nullptr) continue;
    CIUIC_RETURN_IF_ERROR(classify(driver, s.ptr, &s.info).prefix(name));
    const Memory m = s.info.memory;
    any_cuda = any_cuda || m == Memory::kDevice || m == Memory::kManaged;
    any_pageable = any_pageable || m == Memory::kHost;
    if (m == Memory::kDevice || m == Memory::kManaged) {
      if (out->gpu >= 0 && out->gpu != s.info.device)
        return invalid_argument(std::string(name) + ": the buffers are on two GPUs (" +
                                std::to_string(out->gpu) + " and " + std::to_string(s.info.device) +
                                "); a call's buffers must be on the stream's GPU");
      out->gpu = s.info.device;
    }
  }
  auto describe = [&](const Seen& s) {
    return std::string(s.what) + " is " + memory_name(s.info.memory) + " memory" +
           (s.info.device >= 0 && s.info.memory != Memory::kPinned
                ? " on GPU " + std::to_string(s.info.device)
                : "");
  };
  if (stream == nullptr && !any_cuda) return Status::Ok();  // host buffers, host path
  if (!cuda_enabled()) {
    const Seen* dev = nullptr;
    for (const Seen& s : seen)
      if (s.ptr != nullptr &&
          (s.info.memory == Memory::kDevice || s.info.memory == Memory::kManaged))
        dev = &s;
    return unsupported(
        std::string(name) + ": " + why_no_cuda() + ", so " +
        (dev ? describe(*dev) + " cannot be used" : std::string("CUDA streams cannot be used")) +
        " (pass host buffers with stream = NULL)");
  }
  if (stream != nullptr && driver == nullptr)
    return unsupported(std::string(name) +
                       ": a stream was passed but this process has not "
                       "initialised CUDA (libcuda.so.1 is not loaded); for host buffers pass "
                       "stream = NULL");
  if (any_pageable) {
    for (const Seen& s : seen) {
      if (s.ptr == nullptr || s.info.memory != Memory::kHost) continue;
      if (any_cuda)
        return invalid_argument(std::string(name) + ": the call mixes host and CUDA memory (" +
                                describe(seen[0]) + ", " + describe(seen[1]) +
                                "): pass CUDA memory (device, managed or pinned host) for both, "
                                "or host memory for both with stream = NULL");
      return unsupported(std::string(name) + ": a stream was passed but " + describe(s) +
                         ": with a stream, buffers must be CUDA memory (device, managed or "
                         "pinned host); for host buffers pass stream = NULL");
    }
  }
  out->device = true;
  return Status::Ok();
}

}  // namespace ciuic::cuda
