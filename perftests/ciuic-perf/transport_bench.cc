// Transport benchmarks between two ranks, straight on the transport interface (no
// collectives): `bw` streams messages one way like perftest's ib_write_bw, `lat`
// ping-pongs like ib_send_lat and reports half the round trip.
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "base/log.h"
#include "core/bootstrap.h"
#include "core/comm.h"
#include "options.h"
#include "tick_clock.h"
#include "transports/transport.h"

namespace ciuic::perf {
namespace {

struct Link {
  std::unique_ptr<transport::Transport> transport;
  std::unique_ptr<transport::Listener> listener;
  std::unique_ptr<transport::SendChannel> send;
  std::unique_ptr<transport::RecvChannel> recv;
};

Status open_link(const core::LaunchInfo& info, core::StoreClient& store, Link* link) {
  std::string why;
  CIUIC_RETURN_IF_ERROR(transport::create_transport(core::configured_transport(),
                                                    transport::TransportOptions{}, &link->transport, &why));
  CIUIC_RETURN_IF_ERROR(link->transport->listen(0, &link->listener));
  const auto& h = link->listener->handle();
  std::vector<uint8_t> mine(h.bytes, h.bytes + transport::kHandleBytes);
  std::vector<std::vector<uint8_t>> all;
  Deadline deadline = Deadline::after_ms(60000);
  CIUIC_RETURN_IF_ERROR(store.allgather("handles", mine, &all, deadline));
  transport::ConnectHandle peer;
  std::memcpy(peer.bytes, all[1 - info.rank].data(), transport::kHandleBytes);
  std::unique_ptr<transport::Connector> connector;
  CIUIC_RETURN_IF_ERROR(link->transport->connect(0, peer, &connector));
  while (!link->send || !link->recv) {
    if (!link->send) CIUIC_RETURN_IF_ERROR(connector->progress(&link->send));
    if (!link->recv) CIUIC_RETURN_IF_ERROR(link->listener->accept(&link->recv));
    if (deadline.expired()) return timeout_error("the two ranks could not connect within 60 s");
  }
  if (info.rank == 0)
    std::printf("# transport %s (%s), peer %s\n", link->transport->name(), why.c_str(),
                link->send->peer_description().c_str());
  return Status::Ok();
}

Status wait_done(transport::Channel* ch, bool is_send, transport::Request* req, Deadline deadline) {
  bool done = false;
  // The clock is read every 1024th round: where it is not in the vDSO (an emulated HPET,
  // as in the Soft-RoCE guest) each read is a system call that would dominate the latency.
  for (uint32_t round = 1; !done; ++round) {
    Status s = is_send ? static_cast<transport::SendChannel*>(ch)->test(req, &done, nullptr)
                       : static_cast<transport::RecvChannel*>(ch)->test(req, &done, nullptr);
    CIUIC_RETURN_IF_ERROR(s);
    if (!done && round % 1024 == 0 && deadline.expired()) return timeout_error("transfer timed out");
  }
  return Status::Ok();
}

// Streams `iters` messages of `bytes` with up to `window` in flight; returns seconds.
Status stream(Link& link, bool sender, void* buf, transport::MemoryRegion* region, size_t bytes, int iters,
              int window, double* seconds) {
  Deadline deadline = Deadline::after_ms(120000);
  std::vector<transport::Request*> in_flight;
  int posted = 0, completed = 0;
  int tag = 0;
  uint32_t rounds = 0;
  int idle_rounds = 0;
  std::vector<pollfd> fds;
  auto t0 = std::chrono::steady_clock::now();
  while (completed < iters) {
    // A side that has nothing to do for a while sleeps on the channel's descriptors, as
    // perftest's ib_write_bw receiver waits passively: where the NIC is software (Soft-RoCE)
    // a spinning receiver takes the core that moves the bytes.
    if (idle_rounds >= 64) {
      fds.clear();
      if (sender) link.send->collect_poll_fds(&fds);
      else link.recv->collect_poll_fds(&fds);
      if (!fds.empty()) ::poll(fds.data(), fds.size(), 1);
      idle_rounds = 0;
    }
    const int completed_before = completed;
    while (posted < iters && static_cast<int>(in_flight.size()) < window) {
      transport::Request* req = nullptr;
      if (sender) {
        CIUIC_RETURN_IF_ERROR(link.send->isend(buf, bytes, tag, region, &req));
      } else {
        CIUIC_RETURN_IF_ERROR(link.recv->irecv(1, &buf, &bytes, &tag, &region, &req));
      }
      if (req == nullptr) break;
      in_flight.push_back(req);
      ++posted;
    }
    while (!in_flight.empty()) {
      bool done = false;
      Status s = sender ? link.send->test(in_flight.front(), &done, nullptr)
                        : link.recv->test(in_flight.front(), &done, nullptr);
      CIUIC_RETURN_IF_ERROR(s);
      if (!done) break;
      in_flight.erase(in_flight.begin());
      ++completed;
    }
    idle_rounds = completed == completed_before ? idle_rounds + 1 : 0;
    if (++rounds % 1024 == 0 && deadline.expired()) return timeout_error("bandwidth test timed out");
  }
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Status::Ok();
}

Status run(const Options& o, const core::LaunchInfo& info) {
  if (info.nranks != 2) return invalid_argument("the transport benchmark needs exactly 2 ranks");
  CIUIC_RETURN_IF_ERROR(core::serve_root_if_rank0(info));
  std::unique_ptr<core::StoreClient> store;
  CIUIC_RETURN_IF_ERROR(core::StoreClient::connect(info.id, "perf-transport", info.rank, 2,
                                                   Deadline::after_ms(60000), &store));
  Link link;
  CIUIC_RETURN_IF_ERROR(open_link(info, *store, &link));
  std::vector<char> buf(std::max<size_t>(o.max_bytes, 1), 1);
  std::vector<char> inbox(buf.size());
  const bool bw = o.transport_mode == "bw";
  // Registered once, as perftest and NCCL do; the bw stream sends from and receives into
  // `buf`, the ping-pong receives into `inbox`.
  std::unique_ptr<transport::MemoryRegion> buf_send_region, buf_recv_region, inbox_region;
  if (!o.unregistered) {
    CIUIC_RETURN_IF_ERROR(link.send->register_memory(buf.data(), buf.size(), transport::kHostMemory,
                                                     &buf_send_region));
    CIUIC_RETURN_IF_ERROR(link.recv->register_memory(buf.data(), buf.size(), transport::kHostMemory,
                                                     &buf_recv_region));
    CIUIC_RETURN_IF_ERROR(link.recv->register_memory(inbox.data(), inbox.size(), transport::kHostMemory,
                                                     &inbox_region));
  }
  if (info.rank == 0) {
    if (bw) std::printf("#%11s %12s %16s %14s\n", "bytes", "iterations", "BW average[GB/s]", "MsgRate[Mpps]");
    else std::printf("#%11s %12s %12s %12s %12s %12s\n", "bytes", "iterations", "t_min[usec]", "t_avg[usec]", "t_p50[usec]", "t_p99[usec]");
  }
  int step = 0;
  for (size_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= o.step_factor, ++step) {
    std::vector<std::vector<uint8_t>> sync;
    CIUIC_RETURN_IF_ERROR(store->allgather("size" + std::to_string(step), {}, &sync, Deadline::after_ms(60000)));
    const int iters = o.iters * (bytes <= 65536 ? 50 : 1) + o.warmup;
    if (bw) {
      double seconds = 0;
      CIUIC_RETURN_IF_ERROR(stream(link, info.rank == 0, buf.data(), info.rank == 0 ? buf_send_region.get() : buf_recv_region.get(),
                                   bytes, iters, transport::kMaxRequests, &seconds));
      if (info.rank == 1) {
        std::vector<uint8_t> mine(sizeof(double));
        std::memcpy(mine.data(), &seconds, sizeof(double));
        CIUIC_RETURN_IF_ERROR(store->allgather("t" + std::to_string(step), mine, &sync, Deadline::after_ms(60000)));
      } else {
        CIUIC_RETURN_IF_ERROR(store->allgather("t" + std::to_string(step), std::vector<uint8_t>(sizeof(double)), &sync, Deadline::after_ms(60000)));
        double recv_seconds;
        std::memcpy(&recv_seconds, sync[1].data(), sizeof(double));
        std::printf(" %11zu %12d %16.3f %14.4f\n", bytes, iters,
                    static_cast<double>(bytes) * iters / recv_seconds / 1e9, iters / recv_seconds / 1e6);
      }
    } else {
      std::vector<uint64_t> samples;  // round trips in ticks of the CPU's counter
      samples.reserve(static_cast<size_t>(iters));
      TickClock clock;
      Deadline deadline = Deadline::after_ms(120000);
      void* data = buf.data();
      void* into = inbox.data();
      transport::MemoryRegion* recv_region = inbox_region.get();
      size_t size = bytes;
      int tag = 0;
      for (int i = 0; i < iters; ++i) {
        const uint64_t t0 = TickClock::ticks();
        // Each rank posts its receive first, as the collectives' executor does and as
        // perftest pre-posts its receive WQEs: a receiver-driven transport (ibverbs'
        // FIFO) then announces the buffer while the other side is still busy.
        transport::Request* recv_req = nullptr;
        transport::Request* send_req = nullptr;
        do {
          CIUIC_RETURN_IF_ERROR(link.recv->irecv(1, &into, &size, &tag, &recv_region, &recv_req));
        } while (recv_req == nullptr);
        if (info.rank == 1) CIUIC_RETURN_IF_ERROR(wait_done(link.recv.get(), false, recv_req, deadline));
        do {
          CIUIC_RETURN_IF_ERROR(link.send->isend(data, size, tag, buf_send_region.get(), &send_req));
        } while (send_req == nullptr);
        CIUIC_RETURN_IF_ERROR(wait_done(link.send.get(), true, send_req, deadline));
        if (info.rank == 0) CIUIC_RETURN_IF_ERROR(wait_done(link.recv.get(), false, recv_req, deadline));
        const uint64_t t1 = TickClock::ticks();
        if (i >= o.warmup) samples.push_back(t1 - t0);
      }
      const double us_per_tick = clock.microseconds_per_tick() / 2;  // half the round trip
      if (info.rank == 0 && !samples.empty()) {
        std::sort(samples.begin(), samples.end());
        double sum = 0;
        for (uint64_t v : samples) sum += static_cast<double>(v);
        auto us = [&](double ticks) { return ticks * us_per_tick; };
        std::printf(" %11zu %12zu %12.2f %12.2f %12.2f %12.2f\n", bytes, samples.size(), us(samples.front()),
                    us(sum / samples.size()), us(samples[samples.size() / 2]),
                    us(samples[samples.size() * 99 / 100]));
      }
    }
    std::fflush(stdout);
    if (bytes == 0) break;
  }
  return Status::Ok();
}

}  // namespace

int run_transport_bench(const Options& o) {
  core::LaunchInfo info;
  Status s = core::read_launch_env(&info);
  if (s.ok()) s = run(o, info);
  if (!s.ok()) {
    std::fprintf(stderr, "ciuic-perf transport %s: rank %d: %s\n", o.transport_mode.c_str(), info.rank,
                 s.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace ciuic::perf
