// ciuic-perf calibrate: measures what the tuner's cost model needs of this machine and
// prints the CIUIC_* settings that reproduce it (docs/tuning.md).
//
// For the network transport (rank 0 and a peer on another host, else rank 1) and, when
// the communicator has one, the local transport (rank 0 and a peer on its host):
//   - on the transport itself: the half round trip of a -b byte message and the
//     streaming rate of -e byte messages (a window of sends in flight);
//   - through the executor, on a two-rank communicator of the job: the half round trip of
//     a send/recv (one operation each way), the cost of one message in a pipelined
//     stream (a chain broadcast cut in 64-byte chunks: the model's alpha) and the rate of
//     a chain broadcast of -e bytes in the usual chunks (the model's link bandwidth);
// and, on rank 0, the float32 sum reduction rate of the CPU kernels (the model's gamma).
// Rank 0 prints them and, with --write FILE, writes the file CIUIC_TUNER_FILE reads.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/config.h"
#include "ciuic/ciuic.h"
#include "coll/tuner.h"
#include "core/bootstrap.h"
#include "core/comm.h"
#include "options.h"
#include "reduce/reduce.h"
#include "transports/transport.h"

namespace ciuic::perf {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Status check(ciuic_result_t rc, ciuic_comm_t comm, const char* what) {
  if (rc == CIUIC_SUCCESS) return Status::Ok();
  return Status(rc, std::string(what) + ": " + ciuic_comm_get_last_error(comm));
}

// What one link measured; negative: not measured.
struct LinkFigures {
  std::string transport;
  std::string between;  // "rank 0 and rank 1 (same host)"
  double transport_half_rtt_s = -1;
  double transport_bytes_per_s = -1;
  double exec_half_rtt_s = -1;
  double exec_round_s = -1;        // one dependent round inside an operation
  double exec_alpha_s = -1;        // that less a hop: the model's alpha
  double exec_per_message_s = -1;  // one message of a pipelined stream
  double exec_bytes_per_s = -1;
};

// ---- the transport itself, between two ranks ----

struct Link {
  std::unique_ptr<core::StoreClient> store;
  std::unique_ptr<transport::Transport> transport;
  std::unique_ptr<transport::Listener> listener;
  std::unique_ptr<transport::SendChannel> send;
  std::unique_ptr<transport::RecvChannel> recv;
};

// `me` is 0 (rank 0) or 1 (its peer); `ns` names this pair's store namespace.
Status open_link(const std::string& name, const core::UniqueId& id, const std::string& ns, int me,
                 Link* link) {
  Deadline deadline = Deadline::after_ms(60000);
  CIUIC_RETURN_IF_ERROR(core::StoreClient::connect(id, ns, me, 2, deadline, &link->store));
  CIUIC_RETURN_IF_ERROR(
      transport::create_transport(name, transport::TransportOptions{}, &link->transport));
  CIUIC_RETURN_IF_ERROR(link->transport->listen(0, &link->listener));
  const auto& h = link->listener->handle();
  std::vector<uint8_t> mine(h.bytes, h.bytes + transport::kHandleBytes);
  std::vector<std::vector<uint8_t>> all;
  CIUIC_RETURN_IF_ERROR(link->store->allgather("handles", mine, &all, deadline));
  transport::ConnectHandle peer;
  std::memcpy(peer.bytes, all[1 - me].data(), transport::kHandleBytes);
  std::unique_ptr<transport::Connector> connector;
  CIUIC_RETURN_IF_ERROR(link->transport->connect(0, peer, &connector));
  while (!link->send || !link->recv) {
    if (!link->send) CIUIC_RETURN_IF_ERROR(connector->progress(&link->send));
    if (!link->recv) CIUIC_RETURN_IF_ERROR(link->listener->accept(&link->recv));
    if (deadline.expired())
      return timeout_error(name + ": the two ranks could not connect within 60 s");
  }
  return Status::Ok();
}

Status wait_request(transport::Channel* ch, bool is_send, transport::Request* req,
                    const Deadline& deadline) {
  bool done = false;
  while (!done) {
    CIUIC_RETURN_IF_ERROR(
        is_send ? static_cast<transport::SendChannel*>(ch)->test(req, &done, nullptr)
                : static_cast<transport::RecvChannel*>(ch)->test(req, &done, nullptr));
    if (!done && deadline.expired()) return timeout_error("a transfer timed out");
  }
  return Status::Ok();
}

// Ping-pong of `bytes`: rank 0's median half round trip.
Status transport_half_rtt(Link& link, int me, size_t bytes, int iters, int warmup, double* out) {
  std::vector<char> out_buf(std::max<size_t>(bytes, 1)), in_buf(out_buf.size());
  std::vector<double> samples;
  const Deadline deadline = Deadline::after_ms(120000);
  for (int i = 0; i < warmup + iters; ++i) {
    const auto t0 = Clock::now();
    void* into = in_buf.data();
    size_t size = bytes;
    int tag = 0;
    transport::Request* recv_req = nullptr;
    transport::Request* send_req = nullptr;
    do {
      CIUIC_RETURN_IF_ERROR(link.recv->irecv(1, &into, &size, &tag, nullptr, &recv_req));
    } while (recv_req == nullptr);
    if (me == 1) CIUIC_RETURN_IF_ERROR(wait_request(link.recv.get(), false, recv_req, deadline));
    do {
      CIUIC_RETURN_IF_ERROR(link.send->isend(out_buf.data(), bytes, 0, nullptr, &send_req));
    } while (send_req == nullptr);
    CIUIC_RETURN_IF_ERROR(wait_request(link.send.get(), true, send_req, deadline));
    if (me == 0) CIUIC_RETURN_IF_ERROR(wait_request(link.recv.get(), false, recv_req, deadline));
    if (i >= warmup) samples.push_back(since(t0) / 2);
  }
  *out = median(samples);
  return Status::Ok();
}

// Rank 0 streams `count` messages of `bytes` with a window in flight; the receiver times
// them and tells rank 0 (the median of `reps` runs).
Status transport_stream(Link& link, int me, size_t bytes, int count, int reps, double* out) {
  std::vector<char> buf(std::max<size_t>(bytes, 1));
  std::vector<double> rates;
  for (int rep = 0; rep < reps + 1; ++rep) {  // the first warms up (page faults, windows)
    std::vector<std::vector<uint8_t>> sync;
    const std::string at = std::to_string(rep);
    CIUIC_RETURN_IF_ERROR(link.store->allgather("go" + at, {}, &sync, Deadline::after_ms(60000)));
    const Deadline deadline = Deadline::after_ms(120000);
    std::vector<transport::Request*> in_flight;
    int posted = 0, completed = 0;
    const auto t0 = Clock::now();
    while (completed < count) {
      while (posted < count && static_cast<int>(in_flight.size()) < transport::kMaxRequests) {
        transport::Request* req = nullptr;
        void* into = buf.data();
        size_t size = bytes;
        int tag = 0;
        if (me == 0) {
          CIUIC_RETURN_IF_ERROR(link.send->isend(buf.data(), bytes, 0, nullptr, &req));
        } else {
          CIUIC_RETURN_IF_ERROR(link.recv->irecv(1, &into, &size, &tag, nullptr, &req));
        }
        if (req == nullptr) break;
        in_flight.push_back(req);
        ++posted;
      }
      while (!in_flight.empty()) {
        bool done = false;
        CIUIC_RETURN_IF_ERROR(me == 0 ? link.send->test(in_flight.front(), &done, nullptr)
                                      : link.recv->test(in_flight.front(), &done, nullptr));
        if (!done) break;
        in_flight.erase(in_flight.begin());
        ++completed;
      }
      if (deadline.expired()) return timeout_error("the streaming test timed out");
    }
    double seconds = since(t0);
    std::vector<uint8_t> mine(sizeof(double));
    std::memcpy(mine.data(), &seconds, sizeof(double));
    CIUIC_RETURN_IF_ERROR(
        link.store->allgather("time" + at, mine, &sync, Deadline::after_ms(60000)));
    std::memcpy(&seconds, sync[1].data(), sizeof(double));  // the receiver's
    if (rep > 0 && seconds > 0) rates.push_back(static_cast<double>(bytes) * count / seconds);
  }
  *out = median(rates);
  return Status::Ok();
}

Status measure_transport(const std::string& name, const core::UniqueId& id, const std::string& ns,
                         int me, const Options& o, size_t large, LinkFigures* f) {
  Link link;
  CIUIC_RETURN_IF_ERROR(open_link(name, id, ns, me, &link).prefix(name));
  CIUIC_RETURN_IF_ERROR(transport_half_rtt(link, me, o.min_bytes, o.iters * 50, o.warmup * 10,
                                           &f->transport_half_rtt_s)
                            .prefix(name + " ping-pong"));
  CIUIC_RETURN_IF_ERROR(
      transport_stream(link, me, large, std::max(o.iters, 2), 3, &f->transport_bytes_per_s)
          .prefix(name + " streaming"));
  return Status::Ok();
}

// ---- through the executor, on a two-rank communicator ----

// Rank 0's median half round trip of a send/recv ping-pong of `bytes`.
Status exec_half_rtt(ciuic_comm_t pair, int me, size_t bytes, int iters, int warmup, double* out) {
  std::vector<char> buf(std::max<size_t>(bytes, 1));
  std::vector<double> samples;
  for (int i = 0; i < warmup + iters; ++i) {
    const auto t0 = Clock::now();
    if (me == 0) {
      CIUIC_RETURN_IF_ERROR(
          check(ciuic_send(buf.data(), bytes, CIUIC_UINT8, 1, pair, nullptr), pair, "send"));
      CIUIC_RETURN_IF_ERROR(
          check(ciuic_recv(buf.data(), bytes, CIUIC_UINT8, 1, pair, nullptr), pair, "recv"));
    } else {
      CIUIC_RETURN_IF_ERROR(
          check(ciuic_recv(buf.data(), bytes, CIUIC_UINT8, 0, pair, nullptr), pair, "recv"));
      CIUIC_RETURN_IF_ERROR(
          check(ciuic_send(buf.data(), bytes, CIUIC_UINT8, 0, pair, nullptr), pair, "send"));
    }
    if (i >= warmup) samples.push_back(since(t0) / 2);
  }
  *out = median(samples);
  return Status::Ok();
}

// Rank 0's median time of one broadcast (or, with `allreduce`, one float32 all-reduce) of
// `bytes`, `count` back to back and closed by an acknowledgement from the peer. The
// algorithm is CIUIC_ALGO's, set by the caller.
Status exec_collective(ciuic_comm_t pair, int me, bool allreduce, size_t bytes, int count, int reps,
                       double* out) {
  std::vector<char> buf(std::max<size_t>(bytes, sizeof(float)));
  char ack = 0;
  std::vector<double> samples;
  for (int rep = 0; rep < reps + 1; ++rep) {  // the first warms up (connections, schedules)
    const auto t0 = Clock::now();
    for (int i = 0; i < count; ++i)
      CIUIC_RETURN_IF_ERROR(check(
          allreduce ? ciuic_allreduce(buf.data(), buf.data(), bytes / sizeof(float), CIUIC_FLOAT32,
                                      CIUIC_SUM, pair, nullptr)
                    : ciuic_broadcast(buf.data(), buf.data(), bytes, CIUIC_UINT8, 0, pair, nullptr),
          pair, allreduce ? "allreduce" : "broadcast"));
    if (me == 0)
      CIUIC_RETURN_IF_ERROR(
          check(ciuic_recv(&ack, 1, CIUIC_UINT8, 1, pair, nullptr), pair, "recv"));
    else
      CIUIC_RETURN_IF_ERROR(
          check(ciuic_send(&ack, 1, CIUIC_UINT8, 0, pair, nullptr), pair, "send"));
    if (rep > 0) samples.push_back(since(t0) / count);
  }
  *out = median(samples);
  return Status::Ok();
}

constexpr size_t kStreamChunk = 64;  // the smallest chunk the communicator takes

// CIUIC_ALGO for the executor's measurements (the communicator's schedules are cached per
// shape, so each algorithm below gets sizes of its own).
void force(const std::string& allreduce) {
  config::set_override("CIUIC_ALGO", "broadcast=chain,allreduce=" + allreduce);
}

Status measure_executor(ciuic_comm_t pair, int me, const Options& o, size_t large, double hop_s,
                        LinkFigures* f) {
  const int count = std::max(o.iters, 2);
  CIUIC_RETURN_IF_ERROR(
      exec_half_rtt(pair, me, o.min_bytes, o.iters * 10, o.warmup * 2, &f->exec_half_rtt_s)
          .prefix("send/recv ping-pong"));
  // One dependent round inside an operation (what the model charges alpha + a hop for):
  // a two-rank ring all-reduce has two rounds, recursive doubling one; a tiny buffer each,
  // the two taking turns so that both see the same load, the medians' difference.
  {
    std::vector<float> a(2), b(3);
    std::vector<double> ring, doubling;
    for (int i = 0; i < o.warmup + count * 10; ++i) {
      for (int which = 0; which < 2; ++which) {
        force(which == 0 ? "ring" : "recursive_doubling");
        std::vector<float>& buf = which == 0 ? a : b;
        const auto t0 = Clock::now();
        CIUIC_RETURN_IF_ERROR(check(ciuic_allreduce(buf.data(), buf.data(), buf.size(),
                                                    CIUIC_FLOAT32, CIUIC_SUM, pair, nullptr),
                                    pair, "tiny all-reduce"));
        if (i >= o.warmup) (which == 0 ? ring : doubling).push_back(since(t0));
      }
    }
    f->exec_round_s = median(ring) - median(doubling);
  }
  // One message of a pipelined stream: chain broadcasts in 64-byte chunks, 16 and 256 of
  // them; the difference leaves out what every operation costs once.
  double few = 0, many = 0;
  config::set_override("CIUIC_CHUNK_BYTES", std::to_string(kStreamChunk));
  Status s = exec_collective(pair, me, false, 16 * kStreamChunk, count, 3, &few);
  if (s.ok()) s = exec_collective(pair, me, false, 256 * kStreamChunk, count, 3, &many);
  config::set_override("CIUIC_CHUNK_BYTES", std::nullopt);
  CIUIC_RETURN_IF_ERROR(s.prefix("broadcast in 64-byte chunks"));
  f->exec_per_message_s = std::max(many - few, 0.0) / (256 - 16);
  // A round no longer than a hop is noise (a loaded host): the stream's figure stands in.
  f->exec_alpha_s = f->exec_round_s > hop_s ? f->exec_round_s - hop_s : f->exec_per_message_s;
  // The streaming rate: a chain broadcast of `large` bytes in the usual chunks, less an
  // operation of one small message.
  double small_op = 0, large_op = 0;
  CIUIC_RETURN_IF_ERROR(
      exec_collective(pair, me, false, std::max<size_t>(o.min_bytes, 1), count, 3, &small_op)
          .prefix("small broadcast"));
  CIUIC_RETURN_IF_ERROR(
      exec_collective(pair, me, false, large, count, 3, &large_op).prefix("large broadcast"));
  // On a loaded host the large operation can time below the small one: the difference
  // is noise, and the whole operation's time still gives a lower bound on the rate.
  if (large_op > small_op)
    f->exec_bytes_per_s = static_cast<double>(large) / (large_op - small_op);
  else if (large_op > 0)
    f->exec_bytes_per_s = static_cast<double>(large) / large_op;
  return Status::Ok();
}

// ---- the reduction ----

double reduce_bytes_per_s(size_t bytes, int iters) {
  const size_t count = std::max<size_t>(bytes / sizeof(float), 1024);
  std::vector<float> a(count, 1.0f), b(count, 2.0f), dst(count);
  reduce::reduce(dst.data(), a.data(), b.data(), count, CIUIC_FLOAT32, CIUIC_SUM);  // warm up
  std::vector<double> rates;
  for (int i = 0; i < std::max(iters, 3); ++i) {
    const auto t0 = Clock::now();
    reduce::reduce(dst.data(), a.data(), b.data(), count, CIUIC_FLOAT32, CIUIC_SUM);
    const double s = since(t0);
    if (s > 0) rates.push_back(static_cast<double>(count * sizeof(float)) / s);
  }
  return median(rates);
}

// ---- the run ----

std::string host_name() {
  char host[65] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

std::string fixed(double v, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, v);
  return text;
}

std::string figure(double v, double scale, int digits) {
  return v < 0 ? "-" : fixed(v * scale, digits);
}

void print_link(const char* which, const LinkFigures& f) {
  std::printf("  %-8s %-5s %10s %10s %10s %10s %10s %10s   %s\n", which, f.transport.c_str(),
              figure(f.transport_half_rtt_s, 1e6, 2).c_str(),
              figure(f.transport_bytes_per_s, 1e-6, 0).c_str(),
              figure(f.exec_half_rtt_s, 1e6, 2).c_str(), figure(f.exec_round_s, 1e6, 2).c_str(),
              figure(f.exec_per_message_s, 1e6, 2).c_str(),
              figure(f.exec_bytes_per_s, 1e-6, 0).c_str(), f.between.c_str());
}

// Every rank meets the others on the bootstrap store; ranks not in the pair measuring wait
// here asleep (a collective's wait would poll first, on cores the pair needs).
Status sync(core::StoreClient& store, int* step) {
  std::vector<std::vector<uint8_t>> all;
  return store.allgather("sync" + std::to_string((*step)++), {}, &all, Deadline::after_ms(600000));
}

Status run(const Options& o, const core::LaunchInfo& info) {
  if (info.nranks < 2)
    return invalid_argument("calibrate needs at least 2 ranks (-N 2, or a launcher's)");
  const size_t large = o.max_bytes_given ? o.max_bytes : size_t{16} << 20;
  if (large < 1024) return invalid_argument("calibrate: -e must be at least 1K");
  const int me_world = info.rank;
  const double hop_s = coll::configured_cost_params().hop_latency_s;
  coll::TransportCosts in_use;
  std::string note;
  CIUIC_RETURN_IF_ERROR(transports_here(&in_use, &note));

  ciuic_comm_t world = nullptr;
  CIUIC_RETURN_IF_ERROR(check(ciuic_comm_init_env(&world), nullptr, "init"));
  struct Closer {
    ciuic_comm_t* comm;
    ~Closer() {
      if (*comm) ciuic_comm_destroy(*comm);
    }
  } close_world{&world};
  std::unique_ptr<core::StoreClient> store;
  CIUIC_RETURN_IF_ERROR(core::StoreClient::connect(info.id, "perf-calibrate", info.rank,
                                                   info.nranks, Deadline::after_ms(60000), &store));
  int step = 0;

  // Which host each rank is on: the network pair crosses hosts where it can.
  std::string mine_host = host_name();
  std::vector<char> host(64, 0), hosts(64 * static_cast<size_t>(info.nranks));
  std::memcpy(host.data(), mine_host.data(), std::min<size_t>(mine_host.size(), 63));
  CIUIC_RETURN_IF_ERROR(
      check(ciuic_allgather(host.data(), hosts.data(), 64, CIUIC_UINT8, world, nullptr), world,
            "allgather"));
  auto host_of = [&](int r) { return std::string(hosts.data() + 64 * r); };
  int net_peer = 1, local_peer = -1, host_count = 0;
  std::vector<std::string> seen;
  for (int r = 0; r < info.nranks; ++r)
    if (std::find(seen.begin(), seen.end(), host_of(r)) == seen.end()) seen.push_back(host_of(r));
  host_count = static_cast<int>(seen.size());
  for (int r = info.nranks - 1; r >= 1; --r) {
    if (host_of(r) != host_of(0)) net_peer = r;
    if (host_of(r) == host_of(0)) local_peer = r;
  }
  if (in_use.local.empty()) local_peer = -1;
  auto between = [&](int peer) {
    return "rank 0 and rank " + std::to_string(peer) +
           (host_of(peer) == host_of(0) ? " (same host)" : " (host " + host_of(peer) + ")");
  };

  LinkFigures net, local;
  net.transport = in_use.network;
  net.between = between(net_peer);
  local.transport = in_use.local;
  if (local_peer > 0) local.between = between(local_peer);

  // The transports themselves.
  if (me_world == 0 || me_world == net_peer)
    CIUIC_RETURN_IF_ERROR(measure_transport(in_use.network, info.id, "perf-calibrate/net",
                                            me_world == 0 ? 0 : 1, o, large, &net));
  CIUIC_RETURN_IF_ERROR(sync(*store, &step));
  if (local_peer > 0 && (me_world == 0 || me_world == local_peer))
    CIUIC_RETURN_IF_ERROR(measure_transport(in_use.local, info.id, "perf-calibrate/local",
                                            me_world == 0 ? 0 : 1, o, large, &local));
  CIUIC_RETURN_IF_ERROR(sync(*store, &step));

  // Through the executor: a two-rank communicator per link; the network one with no local
  // transport, so that its pair talks over the network transport even on one host.
  ciuic_comm_t net_pair = nullptr, local_pair = nullptr;
  Closer close_net{&net_pair}, close_local{&local_pair};
  config::set_override("CIUIC_LOCAL_TRANSPORT", "none");
  ciuic_result_t rc = ciuic_comm_split(
      world, me_world == 0 || me_world == net_peer ? 0 : CIUIC_SPLIT_NOCOLOR, me_world, &net_pair);
  config::set_override("CIUIC_LOCAL_TRANSPORT", std::nullopt);
  CIUIC_RETURN_IF_ERROR(check(rc, world, "split (network pair)"));
  if (local_peer > 0) {
    CIUIC_RETURN_IF_ERROR(check(
        ciuic_comm_split(world, me_world == 0 || me_world == local_peer ? 0 : CIUIC_SPLIT_NOCOLOR,
                         me_world, &local_pair),
        world, "split (local pair)"));
  }
  if (net_pair != nullptr)
    CIUIC_RETURN_IF_ERROR(measure_executor(net_pair, me_world == 0 ? 0 : 1, o, large, hop_s, &net)
                              .prefix(in_use.network + " through the executor"));
  CIUIC_RETURN_IF_ERROR(sync(*store, &step));
  if (local_pair != nullptr)
    CIUIC_RETURN_IF_ERROR(
        measure_executor(local_pair, me_world == 0 ? 0 : 1, o, large, hop_s, &local)
            .prefix(in_use.local + " through the executor"));
  config::set_override("CIUIC_ALGO", std::nullopt);
  double reduce_rate = 0;
  const size_t reduce_bytes = size_t{16} << 20;  // beyond the caches, as large buffers are
  if (me_world == 0) reduce_rate = reduce_bytes_per_s(reduce_bytes, o.iters);
  CIUIC_RETURN_IF_ERROR(sync(*store, &step));
  if (me_world != 0) return Status::Ok();

  // What the tuner takes from them.
  coll::TunerFile file;
  file.net_transport = net.transport;
  auto ns = [](double seconds) { return static_cast<int64_t>(seconds * 1e9 + 0.5); };
  auto mbps = [](double bytes_per_s) {
    return std::max<int64_t>(static_cast<int64_t>(bytes_per_s / 1e6 + 0.5), 1);
  };
  file.values["net_alpha_ns"] = ns(net.exec_alpha_s);
  if (net.exec_bytes_per_s > 0) file.values["net_mbps"] = mbps(net.exec_bytes_per_s);
  const LinkFigures& purest = local_pair != nullptr ? local : net;
  file.values["exec_overhead_ns"] =
      std::max<int64_t>(ns(purest.exec_alpha_s - purest.transport_half_rtt_s), 0);
  if (local_pair != nullptr) {
    file.local_transport = local.transport;
    file.values["local_alpha_ns"] = ns(local.exec_alpha_s);
    if (local.exec_bytes_per_s > 0) file.values["local_mbps"] = mbps(local.exec_bytes_per_s);
  }
  file.values["reduce_mbps"] = mbps(reduce_rate);

  std::printf("# ciuic-perf calibrate: %d ranks on %d host(s); %s\n", info.nranks, host_count,
              note.c_str());
  std::printf(
      "# small message %zu B, stream %zu B, %d iterations; reduction float32 sum of %zu B\n",
      o.min_bytes, large, o.iters, reduce_bytes);
  std::printf("#\n# %-8s %-5s %10s %10s %10s %10s %10s %10s   %s\n", "", "", "transport", "",
              "executor", "", "", "", "");
  std::printf("# %-8s %-5s %10s %10s %10s %10s %10s %10s   %s\n", "link", "via", "RTT/2(us)",
              "MB/s", "RTT/2(us)", "round(us)", "msg(us)", "MB/s", "between");
  print_link("network", net);
  if (local_pair != nullptr) {
    print_link("local", local);
  } else {
    std::printf("  %-8s %s\n", "local",
                in_use.local.empty() ? "no local transport: peers on a node use the network one"
                                     : "no other rank on rank 0's host: not measured");
  }
  std::printf("  %-8s %.0f MB/s\n", "reduce", reduce_rate / 1e6);
  std::printf(
      "#\n# RTT/2: half a round trip of a small message (executor: a send/recv operation each\n"
      "# way); round: one dependent round inside an operation (ring all-reduce less recursive\n"
      "# doubling, 2 ranks: the model's alpha + one hop); msg: one message of a pipelined\n"
      "# stream; MB/s: streaming (executor: a chain broadcast in the usual chunks, the model's\n"
      "# link bandwidth). The tuner's parameters from these figures:\n");
  std::string env;
  auto add = [&](const char* param, const char* key) {
    auto it = file.values.find(key);
    if (it != file.values.end()) env += std::string(param) + "=" + std::to_string(it->second) + " ";
  };
  add("CIUIC_NET_ALPHA_NS", "net_alpha_ns");
  add("CIUIC_NET_MBPS", "net_mbps");
  add("CIUIC_LOCAL_ALPHA_NS", "local_alpha_ns");
  add("CIUIC_LOCAL_MBPS", "local_mbps");
  add("CIUIC_REDUCE_MBPS", "reduce_mbps");
  add("CIUIC_EXEC_OVERHEAD_NS", "exec_overhead_ns");
  if (!env.empty()) env.pop_back();
  std::printf("%s\n", env.c_str());
  if (!o.write_path.empty()) {
    char when[64] = {};
    const std::time_t now = std::time(nullptr);
    std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::localtime(&now));
    const std::string text = coll::format_tuner_file(
        file,
        {"ciuic-perf calibrate, " + std::string(when) + ", host " + mine_host + ", " +
             std::to_string(info.nranks) + " ranks on " + std::to_string(host_count) + " host(s)",
         "read through CIUIC_TUNER_FILE; CIUIC_* in the environment win over it"});
    const std::string tmp = o.write_path + ".tmp." + std::to_string(getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      out.close();
      if (!out) return invalid_argument("--write " + o.write_path + ": cannot write " + tmp);
    }
    if (std::rename(tmp.c_str(), o.write_path.c_str()) != 0) {
      std::remove(tmp.c_str());
      return errno_error("--write " + o.write_path, errno);
    }
    std::printf("# written to %s: use it with CIUIC_TUNER_FILE=%s\n", o.write_path.c_str(),
                o.write_path.c_str());
  }
  std::fflush(stdout);
  return Status::Ok();
}

}  // namespace

Status transports_here(coll::TransportCosts* out, std::string* note) {
  *out = coll::TransportCosts{};
  const std::string wanted_net = core::configured_transport();
  std::unique_ptr<transport::Transport> net, local;
  std::string why;
  CIUIC_RETURN_IF_ERROR(
      transport::create_transport(wanted_net, transport::TransportOptions{}, &net, &why)
          .prefix("CIUIC_TRANSPORT=" + wanted_net));
  transport::DeviceProperties props;
  out->network = net->name();
  if (net->device_properties(0, &props).ok()) {
    out->network_latency_us = props.latency_us;
    out->network_speed_mbps = props.speed_mbps;
  }
  *note = "network " + out->network + " (CIUIC_TRANSPORT=" + wanted_net + ")";
  // CIUIC_LOCAL_TRANSPORT as the communicator reads it (src/core/endpoints.cc).
  const config::Param* p = config::find_param("CIUIC_LOCAL_TRANSPORT");
  const std::string wanted_local = p != nullptr ? p->current_text() : "auto";
  if (wanted_local == "auto") {
    if (wanted_net == "auto") {
      for (const auto& e : transport::registered_transports()) {
        if (!e.same_host_only) continue;
        if (e.create(transport::TransportOptions{}, &local).ok()) break;
        local.reset();
      }
    }
  } else if (!wanted_local.empty() && wanted_local != "none" && wanted_local != out->network) {
    CIUIC_RETURN_IF_ERROR(
        transport::create_transport(wanted_local, transport::TransportOptions{}, &local)
            .prefix("CIUIC_LOCAL_TRANSPORT=" + wanted_local));
  }
  if (local) {
    out->local = local->name();
    if (local->device_properties(0, &props).ok()) {
      out->local_latency_us = props.latency_us;
      out->local_speed_mbps = props.speed_mbps;
    }
    *note += ", local " + out->local + " for peers on a node";
  } else {
    *note += ", no local transport (peers on a node use the network one)";
  }
  return Status::Ok();
}

int run_calibrate(const Options& o) {
  core::LaunchInfo info;
  Status s = core::read_launch_env(&info);
  if (s.ok()) s = run(o, info);
  if (!s.ok()) {
    std::fprintf(stderr, "ciuic-perf calibrate: rank %d: %s\n", info.rank, s.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace ciuic::perf
