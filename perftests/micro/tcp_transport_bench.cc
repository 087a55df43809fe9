// TCP transport streaming bandwidth over loopback, one sender thread and one receiver
// thread, as a function of the stripe count (CIUIC_TCP_SOCKETS) and the message size.
// One iteration is a batch of messages fully delivered (up to kDepth in flight on each
// side), so the rate counts only bytes the receiver has in its buffers.
//
//   tcp_transport_bench --benchmark_filter=Stream --benchmark_min_time=2
#include <benchmark/benchmark.h>
#include <poll.h>
#include <sys/resource.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/config.h"
#include "transports/transport.h"

namespace ciuic::transport {
namespace {

constexpr int kDepth = 4;

// CPU seconds of the whole process (sender, receiver and the kernel work done for them):
// a steadier measure than wall time when other processes share the cores.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

void sleep_on(const std::vector<pollfd>& collected) {
  std::vector<pollfd> fds = collected;
  if (!fds.empty()) ::poll(fds.data(), fds.size(), 10);
}

template <typename ChannelT>
bool wait_done(ChannelT* channel, Request* request, size_t* size) {
  Deadline deadline = Deadline::after_ms(60000);
  for (;;) {
    bool done = false;
    if (!channel->test(request, &done, size).ok()) return false;
    if (done) return true;
    if (deadline.expired()) return false;
    std::vector<pollfd> fds;
    channel->collect_poll_fds(&fds);
    sleep_on(fds);
  }
}

struct Pair {
  std::unique_ptr<Transport> transport;
  std::unique_ptr<SendChannel> send;
  std::unique_ptr<RecvChannel> recv;
};

bool connect_pair(Pair* p) {
  if (!create_transport("tcp", TransportOptions{}, &p->transport).ok()) return false;
  std::unique_ptr<Listener> listener;
  if (!p->transport->listen(0, &listener).ok()) return false;
  std::thread acceptor([&] {
    Deadline deadline = Deadline::after_ms(10000);
    while (p->recv == nullptr && !deadline.expired() && listener->accept(&p->recv).ok()) {
      std::vector<pollfd> fds;
      listener->collect_poll_fds(&fds);
      if (p->recv == nullptr) sleep_on(fds);
    }
  });
  std::unique_ptr<Connector> connector;
  bool ok = p->transport->connect(0, listener->handle(), &connector).ok();
  Deadline deadline = Deadline::after_ms(10000);
  while (ok && p->send == nullptr && !deadline.expired()) {
    ok = connector->progress(&p->send).ok();
    std::vector<pollfd> fds;
    connector->collect_poll_fds(&fds);
    if (p->send == nullptr) sleep_on(fds);
  }
  acceptor.join();
  return ok && p->send != nullptr && p->recv != nullptr;
}

// Receives messages into kDepth rotating buffers until a 0-byte message says stop.
void receive_until_empty(RecvChannel* recv, size_t size, std::atomic<uint64_t>* received,
                         std::atomic<bool>* failed) {
  std::vector<std::vector<uint8_t>> buffers(kDepth, std::vector<uint8_t>(size));
  Request* inflight[kDepth] = {};
  for (uint64_t i = 0;; ++i) {
    size_t slot = i % kDepth;
    if (inflight[slot] != nullptr) {
      size_t got = 0;
      if (!wait_done(recv, inflight[slot], &got)) {
        failed->store(true);
        return;
      }
      inflight[slot] = nullptr;
      if (got == 0) break;
      received->fetch_add(1);
    }
    void* data = buffers[slot].data();
    size_t capacity = size;
    int tag = 0;
    if (!recv->irecv(1, &data, &capacity, &tag, nullptr, &inflight[slot]).ok() ||
        inflight[slot] == nullptr) {
      failed->store(true);
      return;
    }
  }
}

void BM_TcpStream(benchmark::State& state) {
  int sockets = static_cast<int>(state.range(0));
  size_t size = static_cast<size_t>(state.range(1));
  int batch = static_cast<int>(std::max<int64_t>(4, (int64_t{256} << 20) / state.range(1)));
  config::set_override("CIUIC_SOCKET_IFNAME", "lo");
  config::set_override("CIUIC_TCP_SOCKETS", std::to_string(sockets));
  Pair pair;
  if (!connect_pair(&pair)) {
    state.SkipWithError("could not connect over loopback");
    return;
  }
  std::atomic<uint64_t> received{0};
  std::atomic<bool> failed{false};
  std::thread receiver(receive_until_empty, pair.recv.get(), size, &received, &failed);
  std::vector<std::vector<uint8_t>> buffers(kDepth, std::vector<uint8_t>(size, 0x5a));
  Request* inflight[kDepth] = {};
  uint64_t posted = 0;
  double cpu_start = process_cpu_seconds();
  for (auto _ : state) {
    for (int m = 0; m < batch && !failed.load(); ++m, ++posted) {
      size_t slot = posted % kDepth;
      if (inflight[slot] != nullptr && !wait_done(pair.send.get(), inflight[slot], nullptr))
        failed.store(true);
      if (!pair.send->isend(buffers[slot].data(), size, 0, nullptr, &inflight[slot]).ok())
        failed.store(true);
    }
    for (Request*& r : inflight) {
      if (r != nullptr && !wait_done(pair.send.get(), r, nullptr)) failed.store(true);
      r = nullptr;
    }
    while (received.load() < posted && !failed.load()) std::this_thread::yield();
    if (failed.load()) {
      state.SkipWithError("transfer failed");
      break;
    }
  }
  double cpu_seconds = process_cpu_seconds() - cpu_start;
  Request* stop = nullptr;
  uint8_t none = 0;
  if (!failed.load() && pair.send->isend(&none, 0, 0, nullptr, &stop).ok() && stop != nullptr)
    (void)wait_done(pair.send.get(), stop, nullptr);
  else
    pair.send->abort("benchmark stopped");
  receiver.join();
  state.SetBytesProcessed(static_cast<int64_t>(received.load() * size));
  state.counters["sockets"] = sockets;
  // Process CPU per delivered GiB, sender and receiver together.
  if (received.load() > 0)
    state.counters["cpu_s_per_GiB"] =
        cpu_seconds / (static_cast<double>(received.load() * size) / (1 << 30));
  config::set_override("CIUIC_TCP_SOCKETS", std::nullopt);
  config::set_override("CIUIC_SOCKET_IFNAME", std::nullopt);
}

BENCHMARK(BM_TcpStream)
    ->ArgNames({"sockets", "bytes"})
    ->ArgsProduct({{1, 2, 4, 8}, {4 << 20, 64 << 20}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Round trip of one message there and back (two channels), both sides sleeping in poll()
// between progress calls, as the executor does: latency including wakeups.
void BM_TcpPingPong(benchmark::State& state) {
  size_t size = static_cast<size_t>(state.range(0));
  config::set_override("CIUIC_SOCKET_IFNAME", "lo");
  Pair there, back;
  if (!connect_pair(&there) || !connect_pair(&back)) {
    state.SkipWithError("could not connect over loopback");
    return;
  }
  std::atomic<bool> failed{false};
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    std::vector<uint8_t> buffer(size);
    while (!failed.load()) {
      void* data = buffer.data();
      size_t capacity = size;
      int tag = 0;
      Request* r = nullptr;
      size_t got = 0;
      if (!there.recv->irecv(1, &data, &capacity, &tag, nullptr, &r).ok() || r == nullptr ||
          !wait_done(there.recv.get(), r, &got))
        failed.store(true);
      if (failed.load() || stop.load()) break;
      if (!back.send->isend(buffer.data(), got, 0, nullptr, &r).ok() || r == nullptr ||
          !wait_done(back.send.get(), r, nullptr))
        failed.store(true);
    }
  });
  std::vector<uint8_t> out(size, 1), in(size);
  for (auto _ : state) {
    Request *sr = nullptr, *rr = nullptr;
    void* data = in.data();
    size_t capacity = size;
    int tag = 0;
    if (!back.recv->irecv(1, &data, &capacity, &tag, nullptr, &rr).ok() ||
        !there.send->isend(out.data(), size, 0, nullptr, &sr).ok() ||
        !wait_done(there.send.get(), sr, nullptr) || !wait_done(back.recv.get(), rr, nullptr)) {
      state.SkipWithError("round trip failed");
      failed.store(true);
      break;
    }
  }
  stop.store(true);
  Request* last = nullptr;
  if (!failed.load() && there.send->isend(out.data(), size, 0, nullptr, &last).ok() && last)
    (void)wait_done(there.send.get(), last, nullptr);
  else
    there.send->abort("benchmark stopped");
  echo.join();
  config::set_override("CIUIC_SOCKET_IFNAME", std::nullopt);
}

BENCHMARK(BM_TcpPingPong)->ArgName("bytes")->Arg(8)->Arg(64 << 10)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace ciuic::transport
