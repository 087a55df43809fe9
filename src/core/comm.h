// The communicator: a group of ranks, their connections, and the queue of operations
// that run on them in issue order.
//
// Connections are made lazily: at init every rank publishes its transport listener's
// handle through the bootstrap store; the first operation that needs a peer connects to
// it (and accepts from it), so init costs one allgather at any scale.
//
// Operations run either on the caller's thread (blocking calls, when nothing is queued)
// or on the communicator's progress thread (non-blocking calls), one at a time, in order.
// A blocking call that finds nothing unfinished before it and nobody driving runs at once,
// without joining the queue (no allocation, one lock: the driver's).
// An operation that fails breaks the communicator: peers are told why (so the error
// travels around the ring naming the original culprit) and later calls fail at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/net.h"
#include "base/status.h"
#include "coll/executor.h"
#include "coll/schedule.h"
#include "coll/schedule_cache.h"
#include "core/bootstrap.h"
#include "transports/transport.h"

namespace ciuic::core {

class Communicator;

// Under a launcher, rank 0 serves the bootstrap store at the root address (once per
// process); every other rank does nothing here.
Status serve_root_if_rank0(const LaunchInfo& info);
// The transport communicators use (CIUIC_TRANSPORT).
std::string configured_transport();
// CIUIC_TIMEOUT_MS: the deadline of init and of every operation (unless a communicator sets
// its own), and the handshake deadline of the communicators' listeners.
int64_t configured_timeout_ms();

// What runs: a collective (or one send/recv) with its buffers and its place in issue order.
struct OperationSpec {
  coll::CollectiveArgs args;
  coll::Buffers buffers;
  uint64_t seq = 0;
};

// One queued operation; shared between the issuer (request) and the driver.
struct Operation : OperationSpec {
  std::mutex mutex;
  std::condition_variable cv;
  bool finished = false;
  Status result;
};

class Communicator final : public coll::PeerLinks {
 public:
  // Joins `nranks` ranks sharing `id` and `name_space` (one namespace per communicator).
  static Status create(const UniqueId& id, const std::string& name_space, int rank, int nranks,
                       std::unique_ptr<Communicator>* out);
  ~Communicator() override;

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  // Which node each rank sits on (numbered by first appearance; see node_key_); set by init.
  std::shared_ptr<const std::vector<int>> node_of_rank() const { return node_of_rank_; }

  // Runs one operation to completion on the calling thread (after any queued ones).
  Status run(const coll::CollectiveArgs& args, const coll::Buffers& buffers);
  // Queues one operation for the progress thread (started on first use).
  Status submit(const coll::CollectiveArgs& args, const coll::Buffers& buffers,
                std::shared_ptr<Operation>* out);
  // Waits for a queued operation (never past its deadline plus the queue ahead of it).
  Status wait(const std::shared_ptr<Operation>& op);
  // Lets the progress thread start everything up to `op` (used by ciuic_test).
  void kick(const std::shared_ptr<Operation>& op);

  Status split(int color, int key, std::unique_ptr<Communicator>* out);
  // The deadline of each later operation, in ms: CIUIC_TIMEOUT_MS unless set here (> 0);
  // 0 goes back to CIUIC_TIMEOUT_MS. A split child starts with its parent's.
  Status set_timeout_ms(int64_t ms);
  int64_t timeout_ms() const;
  // Any thread, never blocks on peers or on a stuck thread.
  void abort();

  // PeerLinks
  transport::SendChannel* send_channel(int peer) override;
  transport::RecvChannel* recv_channel(int peer) override;
  std::string describe_peer(int peer) override;

 private:
  Communicator() = default;
  Status init(const UniqueId& id, const std::string& name_space, int rank, int nranks);
  // What init needs no peer for: the wake fd, the transport, its listener. *record gets this
  // rank's endpoint record (listener handle and host name) for the others.
  Status open_endpoint(const UniqueId& id, const std::string& name_space, int rank, int nranks,
                       std::vector<uint8_t>* record);
  Status open_local_endpoint(const transport::TransportOptions& options);
  // Takes every rank's endpoint record, in rank order.
  Status adopt_peers(const std::vector<std::vector<uint8_t>>& records);
  // The CIUIC_* values an operation reads, as of one configuration generation.
  struct Settings {
    uint64_t generation = 0;  // config::configuration_generation() they were read at
    size_t chunk_bytes = 0;
    int scratch_slots = 0;
    int max_in_flight = 0;
    int spin_before_sleep = 0;
    int64_t timeout_ms = 0;  // CIUIC_TIMEOUT_MS (timeout_ms_ overrides it)
    bool trace = false;      // trace lines of the collectives are on (fixed once logging starts)
  };
  static Settings read_settings();
  // The driver's copy, read again only when the configuration changed. Caller holds
  // exec_mutex_.
  const Settings& settings();
  // `args` with the chunk size and scratch slots of `now`.
  static coll::CollectiveArgs prepared(const coll::CollectiveArgs& args, const Settings& now);
  Status enqueue(const coll::CollectiveArgs& args, const coll::Buffers& buffers,
                 std::shared_ptr<Operation>* out);
  // Runs ops[0] (a collective), or several point-to-point ops as one group so that an
  // isend/irecv pair progresses together. Caller holds exec_mutex_.
  Status execute(const OperationSpec* const* ops, size_t count);
  Status connect_peers(const coll::Schedule& schedule, Deadline deadline);
  Status schedule_for(const coll::CollectiveArgs& args, std::shared_ptr<const coll::Schedule>* out);
  // Runs queued ops in order until `until` finished (nullptr: until the queue is empty,
  // stopping at point-to-point ops nobody asked to start yet). Caller holds exec_mutex_.
  void drive_queue(Operation* until);
  void progress_loop();
  void break_with(const Status& error);
  void finish(Operation& op, Status result);

  int rank_ = 0;
  int nranks_ = 1;
  UniqueId id_;
  std::string name_space_;
  uint64_t split_count_ = 0;
  std::shared_ptr<StoreServer> server_;  // held by the process that serves the store
  std::unique_ptr<StoreClient> store_;

  // Two transports: the network one reaches every rank; the local one (shm), when there is
  // one, serves the ranks on this node. Each has its listener; a peer uses one of them.
  struct Endpoint {
    std::unique_ptr<transport::Transport> transport;
    std::unique_ptr<transport::Listener> listener;
    std::string why;  // "auto chose tcp ..." for the startup line
  };
  Endpoint network_;
  Endpoint local_;  // transport null: none, every peer goes over the network
  // This rank's node: CIUIC_LOCAL_SIZE's block, else CIUIC_HOSTID, else the host name.
  // A split child inherits its parent's, so a block keeps meaning the same ranks.
  std::string node_key_;
  std::shared_ptr<const std::vector<int>> node_of_rank_;
  std::vector<std::string> peer_names_;  // "rank 2 on host-a"
  struct Peer {
    transport::ConnectHandle handle;  // of the listener this peer is reached through
    bool local = false;               // through local_ (same node, same host)
    std::unique_ptr<transport::Connector> connecting;
    std::unique_ptr<transport::SendChannel> send;
    std::unique_ptr<transport::RecvChannel> recv;
    bool hello_sent = false;
  };
  std::vector<Peer> peers_;
  // Accepted channels whose first message (the sender's rank) has not arrived yet.
  struct Greeting {
    std::unique_ptr<transport::RecvChannel> channel;
    transport::Request* request = nullptr;
    uint32_t words[2] = {0, 0};
  };
  std::vector<std::unique_ptr<Greeting>> greetings_;  // stable addresses: receives land in them

  coll::ScheduleCache schedules_;
  std::vector<char> scratch_;
  bool oversubscribed_ = true;  // more ranks on this host than cores to run them
  // Issue order: the next sequence number to hand out (by enqueue, under queue_mutex_, or
  // by run()'s direct path), and the first one not yet finished (written under
  // exec_mutex_). Equal: every operation issued so far has finished.
  std::atomic<uint64_t> next_seq_{1};
  std::atomic<uint64_t> unfinished_seq_{1};

  std::mutex exec_mutex_;  // held by whoever drives operations
  Settings settings_;      // under exec_mutex_
  // The driver's reused arrays (under exec_mutex_): the group being run, and its buffers.
  std::vector<std::shared_ptr<Operation>> group_;
  std::vector<const OperationSpec*> group_specs_;
  std::vector<coll::Buffers> buffer_sets_;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::shared_ptr<Operation>> queue_;
  std::thread progress_thread_;
  bool stopping_ = false;
  // Point-to-point ops wait in the queue until something needs them (a wait, a test, a
  // later collective), so that an isend and the irecv issued after it start together.
  uint64_t started_upto_seq_ = 0;

  std::atomic<int64_t> timeout_ms_{0};  // 0: CIUIC_TIMEOUT_MS
  std::atomic<bool> aborted_{false};
  std::atomic<bool> broken_{false};
  std::mutex error_mutex_;
  Status first_error_;
  net::Fd wake_fd_;  // eventfd: abort() wakes a driver sleeping in poll()
};

}  // namespace ciuic::core
