// The bootstrap store's serving side, shared by its two files: store_server.cc (the poll
// loop, connections, handshakes, framing) and store_server_gather.cc (namespaces and
// allgathers). Internal to src/core.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"
#include "core/bootstrap.h"
#include "core/store_protocol.h"

namespace ciuic::core::store_detail {

using Buffer = std::shared_ptr<const std::vector<uint8_t>>;

struct Outgoing {
  Buffer data;
  size_t done = 0;
};

struct Connection {
  uint64_t id = 0;
  net::Fd fd;
  std::string peer;                      // the source address, for every log line
  std::unique_ptr<Handshake> handshake;  // until authenticated
  Deadline handshake_deadline = Deadline::never();
  bool dead = false;
  // Set once the handshake accepted the join.
  bool joined = false;
  std::string name_space;
  int rank = -1;
  // Request being read.
  uint8_t header_bytes[store::kRequestHeaderBytes] = {};
  size_t header_done = 0;
  bool have_header = false;
  store::RequestHeader header;
  std::vector<uint8_t> body;
  size_t body_done = 0;
  bool awaiting = false;  // an allgather of this connection waits for the others
  std::deque<Outgoing> out;
};

// A rank's value, held while it waits; withdrawn if its wait times out.
struct Contribution {
  std::vector<uint8_t> value;
  uint32_t wait_ms = store::kWaitForever;
  Deadline deadline = Deadline::never();
};

struct PendingGather {
  std::vector<std::optional<Contribution>> slots;
  std::vector<bool> gave_up;  // contributed, then timed out and withdrew
  int contributed = 0;
};

struct Member {
  enum State { kAbsent, kJoined, kLeft };
  State state = kAbsent;
  uint64_t connection = 0;
  std::string peer;
};

struct Namespace {
  int nranks = 0;
  std::vector<Member> members;
  int live = 0;
  std::optional<int> first_left;
  std::map<std::string, PendingGather, std::less<>> pending;
};

class StoreServerImpl final : public StoreServer {
 public:
  explicit StoreServerImpl(const Key128& secret);
  ~StoreServerImpl() override;
  Status start(const net::SocketAddress& bind);
  const net::SocketAddress& address() const override { return address_; }

 private:
  void run();
  void accept_new();
  void enforce_unauthenticated_cap();
  void service(Connection& c, short revents);
  void advance_handshake(Connection& c);
  void decide(Connection& c);
  void read_requests(Connection& c);
  void handle_allgather(Connection& c, std::string tag, std::vector<uint8_t> value,
                        uint32_t wait_ms);
  void complete(Namespace& ns, const std::string& tag, PendingGather& gather);
  void send_error(Connection& c, uint16_t status, const std::string& tag, std::string message);
  void enqueue(Connection& c, Buffer data);
  void flush(Connection& c);
  void drop(Connection& c, const std::string& why, bool warn);
  void reap();
  void leave(Connection& c);
  void check_deadlines();
  Connection* find(uint64_t id);
  std::string describe(const Connection& c) const;

  Key128 secret_;
  int64_t handshake_timeout_ms_;
  size_t max_unauthenticated_;
  net::SocketAddress address_;
  net::Fd listen_fd_;
  net::Fd wake_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  // Touched only by the serving thread.
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;  // ordered: oldest first
  std::vector<uint64_t> dropped_;
  std::map<std::string, Namespace, std::less<>> namespaces_;
  uint64_t cap_drops_ = 0;
  Deadline accept_paused_until_ = Deadline::after_ms(0);
};

}  // namespace ciuic::core::store_detail
