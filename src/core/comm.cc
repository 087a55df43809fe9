#include "core/comm.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/config.h"
#include "base/log.h"
#include "coll/algorithms.h"
#include "coll/tuner.h"
#include "core/endpoints.h"
#include "reduce/reduce.h"

namespace ciuic::core {
namespace {

const config::IntParam kTimeoutMs{
    "CIUIC_TIMEOUT_MS", 300000,
    "Deadline of every operation and of init, in ms: past it the call fails naming the peers "
    "not heard from"};
const config::IntParam kChunkBytes{"CIUIC_CHUNK_BYTES", 256 << 10,
                                   "Pipelining chunk of the collective algorithms, in bytes"};
const config::IntParam kScratchSlots{
    "CIUIC_SCRATCH_SLOTS", 16, "Chunk-sized scratch buffers a pipelined algorithm cycles through"};
const config::IntParam kMaxInFlight{"CIUIC_MAX_IN_FLIGHT", 8,
                                    "Sends (and receives) in flight per peer during a collective"};
const config::IntParam kSpinCount{
    "CIUIC_SPIN_COUNT", 1000,
    "Idle polling rounds (past 16 each yields the core where ranks outnumber cores) before a rank "
    "sleeps in poll(): lower saves CPU, higher cuts latency"};
const config::StringParam kAlgo{
    "CIUIC_ALGO", "",
    "Force algorithms: a name for every collective that has it (ring), or per collective "
    "(allreduce=ring,broadcast=chain). Empty: the default"};

std::string algorithm_for(coll::Collective c) {
  std::string spec = kAlgo.get();
  std::string fallback;
  size_t start = 0;
  while (start < spec.size()) {
    size_t end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    std::string item = spec.substr(start, end - start);
    size_t eq = item.find('=');
    if (eq == std::string::npos) {
      fallback = item;
    } else if (item.substr(0, eq) == coll::collective_name(c)) {
      return item.substr(eq + 1);
    }
    start = end + 1;
  }
  if (fallback.empty()) return "";
  for (const auto& e : coll::registered_algorithms())
    if (e.collective == c && fallback == e.name) return fallback;
  return "";  // a global name applies only where that algorithm exists
}

bool point_to_point(const coll::CollectiveArgs& a) {
  return a.collective == coll::Collective::kSend || a.collective == coll::Collective::kRecv;
}

std::string size_text(size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " B";
}

// The innermost "rank N failed: ..." a message carries (the reason break_with sends), or
// "" when the failure started here.
std::string original_failure(const std::string& message) {
  size_t found = std::string::npos;
  for (size_t at = message.find("rank "); at != std::string::npos;
       at = message.find("rank ", at + 1)) {
    size_t end = at + 5;
    while (end < message.size() && message[end] >= '0' && message[end] <= '9') ++end;
    if (end > at + 5 && message.compare(end, 9, " failed: ") == 0) found = at;
  }
  return found == std::string::npos ? std::string() : message.substr(found);
}

}  // namespace

int64_t configured_timeout_ms() { return kTimeoutMs.get(); }

int64_t Communicator::timeout_ms() const {
  const int64_t mine = timeout_ms_.load(std::memory_order_relaxed);
  return mine > 0 ? mine : kTimeoutMs.get();
}

Status Communicator::set_timeout_ms(int64_t ms) {
  if (ms < 0)
    return invalid_argument("timeout " + std::to_string(ms) +
                            " ms is negative (0 restores CIUIC_TIMEOUT_MS, " +
                            std::to_string(kTimeoutMs.get()) + " ms)");
  timeout_ms_.store(ms, std::memory_order_relaxed);
  return Status::Ok();
}

Status serve_root_if_rank0(const LaunchInfo& info) {
  if (info.rank != 0 || find_server(info.id.root)) return Status::Ok();
  std::shared_ptr<StoreServer> server;
  CIUIC_RETURN_IF_ERROR(StoreServer::start(info.id.root, info.id.secret, &server)
                            .prefix("rank 0 serving the bootstrap at " + info.id.root.to_string()));
  adopt_server(server);
  return Status::Ok();
}

Status Communicator::create(const UniqueId& id, const std::string& name_space, int rank, int nranks,
                            std::unique_ptr<Communicator>* out) {
  std::unique_ptr<Communicator> comm(new Communicator());
  CIUIC_RETURN_IF_ERROR(comm->init(id, name_space, rank, nranks));
  *out = std::move(comm);
  return Status::Ok();
}

Status Communicator::init(const UniqueId& id, const std::string& name_space, int rank, int nranks) {
  // The store lives as long as the communicators of the process that serves it.
  server_ = find_server(id.root);
  if (server_) forget_server(id.root);
  Deadline deadline = Deadline::after_ms(kTimeoutMs.get());
  const std::string where = "rank " + std::to_string(rank) + " of " + std::to_string(nranks);
  CIUIC_RETURN_IF_ERROR(
      StoreClient::connect(id, name_space, rank, nranks, deadline, &store_).prefix(where));
  std::vector<uint8_t> mine;
  CIUIC_RETURN_IF_ERROR(open_endpoint(id, name_space, rank, nranks, &mine));
  std::vector<std::vector<uint8_t>> all;
  CIUIC_RETURN_IF_ERROR(store_->allgather("listeners", mine, &all, deadline).prefix(where));
  return adopt_peers(all);
}

Communicator::~Communicator() {
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    stopping_ = true;
    started_upto_seq_ = next_seq_.load();  // everything still queued runs (or fails fast) now
  }
  queue_cv_.notify_all();
  if (progress_thread_.joinable()) progress_thread_.join();
  std::lock_guard<std::mutex> exec(exec_mutex_);
  drive_queue(nullptr);  // operations still queued finish (or fail fast if broken)
}

namespace {

// What the tuner models this communicator's links with where neither the environment nor
// CIUIC_TUNER_FILE gives them: the figures its transports report (docs/tuning.md).
std::shared_ptr<const coll::TransportCosts> transport_costs(transport::Transport& network,
                                                            transport::Transport* local) {
  auto costs = std::make_shared<coll::TransportCosts>();
  transport::DeviceProperties props;
  costs->network = network.name();
  if (network.device_properties(0, &props).ok()) {
    costs->network_latency_us = props.latency_us;
    costs->network_speed_mbps = props.speed_mbps;
  }
  if (local != nullptr) {
    costs->local = local->name();
    if (local->device_properties(0, &props).ok()) {
      costs->local_latency_us = props.latency_us;
      costs->local_speed_mbps = props.speed_mbps;
    }
  }
  return costs;
}

}  // namespace

Status Communicator::schedule_for(const coll::CollectiveArgs& args,
                                  std::shared_ptr<const coll::Schedule>* out) {
  if ((*out = schedules_.find(args))) return Status::Ok();
  auto schedule = std::make_shared<coll::Schedule>();
  coll::CollectiveArgs with_nodes = args;
  with_nodes.node_of_rank = node_of_rank_;
  with_nodes.transports = transport_costs(*network_.transport, local_.transport.get());
  CIUIC_RETURN_IF_ERROR(
      coll::build_schedule(with_nodes, algorithm_for(args.collective), schedule.get()));
  schedules_.insert(args, schedule);
  *out = schedule;
  return Status::Ok();
}

Status Communicator::execute(const OperationSpec* const* ops, size_t count) {
  if (aborted_.load()) return aborted_error("the communicator was aborted");
  if (broken_.load()) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    return Status(first_error_.code(),
                  "the communicator is unusable after an earlier error: " + first_error_.message());
  }
  const OperationSpec& first = *ops[0];
  std::shared_ptr<const coll::Schedule> schedule;
  CIUIC_RETURN_IF_ERROR(schedule_for(first.args, &schedule));
  buffer_sets_.assign(1, first.buffers);
  // Named only when something is said about it (an error, a trace line): building the
  // text on every operation would put string work on the hot path. The label captures one
  // pointer, so that std::function keeps it without allocating.
  struct Named {
    const OperationSpec* const* ops;
    size_t count;
    const coll::Schedule* single;  // the schedule of a lone operation (held by `schedule`)
  } named{ops, count, schedule.get()};
  auto label = [&named] {
    const OperationSpec& op = *named.ops[0];
    if (named.count > 1)
      return "group of " + std::to_string(named.count) + " send/recv #" + std::to_string(op.seq) +
             "-#" + std::to_string(named.ops[named.count - 1]->seq);
    return std::string(coll::collective_name(op.args.collective)) + " #" + std::to_string(op.seq) +
           " (" + named.single->algorithm + ", " +
           size_text(op.args.count * reduce::datatype_size(op.args.datatype)) + " " +
           reduce::datatype_name(op.args.datatype) + ")";
  };
  if (count > 1) {
    // One schedule for the whole group: each op's steps, pointing at its own buffers.
    auto group = std::make_shared<coll::Schedule>(*schedule);
    group->algorithm = "group";
    for (size_t i = 1; i < count; ++i) {
      std::shared_ptr<const coll::Schedule> one;
      CIUIC_RETURN_IF_ERROR(schedule_for(ops[i]->args, &one));
      const auto base = static_cast<uint32_t>(group->steps.size());
      for (coll::Step step : one->steps) {
        step.src.set = step.dst.set = step.src2.set = static_cast<uint16_t>(i);
        std::vector<uint32_t> deps(one->deps.begin() + step.dep_begin,
                                   one->deps.begin() + step.dep_begin + step.dep_count);
        for (auto& d : deps) d += base;
        group->add(step, deps);
      }
      buffer_sets_.push_back(ops[i]->buffers);
    }
    group->finalize();
    schedule = group;
  }
  const Settings& now = settings();
  const int64_t mine = timeout_ms_.load(std::memory_order_relaxed);
  Deadline deadline = Deadline::after_ms(mine > 0 ? mine : now.timeout_ms);
  Status s = connect_peers(*schedule, deadline);
  if (!s.ok()) {
    s.prefix(label());
    break_with(s);
    return s;
  }
  if (scratch_.size() < schedule->scratch_bytes) scratch_.resize(schedule->scratch_bytes);
  buffer_sets_[0].scratch = scratch_.data();
  coll::ExecOptions options;
  options.label = label;
  options.deadline = deadline;
  options.aborted = &aborted_;
  options.wake_fd = wake_fd_.get();
  options.max_in_flight = now.max_in_flight;
  options.spin_before_sleep = now.spin_before_sleep;
  options.yield_when_idle = oversubscribed_;
  if (now.trace) {
    CIUIC_LOG_TRACE(log::kColl, "rank %d: %s starts, %zu steps", rank_, label().c_str(),
                    schedule->steps.size());
  }
  s = coll::execute(*schedule, buffer_sets_, *this, options);
  if (!s.ok()) break_with(s);
  return s;
}

void Communicator::break_with(const Status& error) {
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!broken_.load()) first_error_ = error;
    broken_.store(true);
  }
  CIUIC_LOG_WARN(log::kColl, "rank %d: %s", rank_, error.message().c_str());
  // Tell every connected peer, so an error travels to ranks that never talked to the
  // culprit instead of leaving them to time out. An error that came from a peer passes
  // that peer's reason on unchanged: prefixed at every hop, the culprit would fall off
  // the end of the transport's bounded reason after two or three hops.
  std::string reason = original_failure(error.message());
  if (reason.empty()) reason = "rank " + std::to_string(rank_) + " failed: " + error.message();
  for (Peer& p : peers_) {
    if (p.send) p.send->abort(reason);
    if (p.recv) p.recv->abort(reason);
  }
}

void Communicator::finish(Operation& op, Status result) {
  std::lock_guard<std::mutex> lock(op.mutex);
  op.result = std::move(result);
  op.finished = true;
  op.cv.notify_all();
}

void Communicator::drive_queue(Operation* until) {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      if (queue_.empty()) return;
      const Operation& head = *queue_.front();
      if (until == nullptr && point_to_point(head.args) && head.seq > started_upto_seq_) return;
      size_t count = 1;
      while (count < queue_.size() && point_to_point(head.args) &&
             point_to_point(queue_[count]->args))
        ++count;
      // Taken off the queue now: only the holder of exec_mutex_ runs or finishes them, and
      // unfinished_seq_ still says they have not finished.
      for (size_t i = 0; i < count; ++i) {
        group_specs_.push_back(queue_[i].get());
        group_.push_back(std::move(queue_[i]));
      }
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<long>(count));
    }
    Status s = execute(group_specs_.data(), group_specs_.size());
    bool reached = false;
    for (auto& op : group_) {
      finish(*op, s);
      reached = reached || op.get() == until;
    }
    unfinished_seq_.store(group_.back()->seq + 1, std::memory_order_release);
    group_.clear();  // the arrays keep their capacity for the next group
    group_specs_.clear();
    if (reached) return;
  }
}

void Communicator::progress_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(queue_mutex_);
      queue_cv_.wait(lock, [&] {
        return stopping_ || (!queue_.empty() && (!point_to_point(queue_.front()->args) ||
                                                 queue_.front()->seq <= started_upto_seq_));
      });
      if (stopping_) return;  // the destructor drains what is left
    }
    std::lock_guard<std::mutex> exec(exec_mutex_);
    drive_queue(nullptr);
  }
}

Status Communicator::submit(const coll::CollectiveArgs& args, const coll::Buffers& buffers,
                            std::shared_ptr<Operation>* out) {
  CIUIC_RETURN_IF_ERROR(enqueue(args, buffers, out));
  if (!point_to_point(args)) kick(*out);  // a collective starts everything before it too
  return Status::Ok();
}

void Communicator::kick(const std::shared_ptr<Operation>& op) {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  started_upto_seq_ = std::max(started_upto_seq_, op->seq);
  if (!progress_thread_.joinable()) progress_thread_ = std::thread([this] { progress_loop(); });
  queue_cv_.notify_all();
}

Communicator::Settings Communicator::read_settings() {
  Settings now;
  now.generation = config::configuration_generation();
  now.chunk_bytes = static_cast<size_t>(std::max<int64_t>(kChunkBytes.get(), 64));
  now.scratch_slots = static_cast<int>(std::clamp<int64_t>(kScratchSlots.get(), 2, 1024));
  now.max_in_flight =
      static_cast<int>(std::clamp<int64_t>(kMaxInFlight.get(), 1, transport::kMaxRequests));
  now.spin_before_sleep = static_cast<int>(std::max<int64_t>(kSpinCount.get(), 0));
  now.timeout_ms = kTimeoutMs.get();
  now.trace = log::enabled(log::Level::kTrace, log::kColl);
  return now;
}

const Communicator::Settings& Communicator::settings() {
  // Generations start at 1: the zero of a new communicator reads them on its first call.
  if (settings_.generation != config::configuration_generation()) settings_ = read_settings();
  return settings_;
}

coll::CollectiveArgs Communicator::prepared(const coll::CollectiveArgs& args, const Settings& now) {
  coll::CollectiveArgs out = args;
  out.chunk_bytes = now.chunk_bytes;
  out.scratch_slots = now.scratch_slots;
  return out;
}

Status Communicator::enqueue(const coll::CollectiveArgs& args, const coll::Buffers& buffers,
                             std::shared_ptr<Operation>* out) {
  auto op = std::make_shared<Operation>();
  op->args = prepared(args, read_settings());
  op->buffers = buffers;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    if (stopping_) return invalid_argument("the communicator is being destroyed");
    // Taken and queued under one lock: the queue stays in sequence order.
    op->seq = next_seq_.fetch_add(1);
    queue_.push_back(op);
  }
  *out = op;
  return Status::Ok();
}

Status Communicator::wait(const std::shared_ptr<Operation>& op) {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(op->mutex);
      if (op->finished) return op->result;
    }
    std::unique_lock<std::mutex> exec(exec_mutex_, std::try_to_lock);
    if (exec.owns_lock()) {
      drive_queue(op.get());
      continue;
    }
    // The progress thread is driving: let it go on to this operation.
    kick(op);
    std::unique_lock<std::mutex> lock(op->mutex);
    op->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return op->finished; });
  }
}

Status Communicator::run(const coll::CollectiveArgs& args, const coll::Buffers& buffers) {
  {
    // The direct path: nobody is driving and every operation issued before this one has
    // finished (next_seq_ == unfinished_seq_, and taking the number proves nobody took one
    // in between). Then this call is next in issue order and runs here, as it would have
    // from the queue, but with no Operation to allocate, queue or wake anyone for. An
    // operation issued meanwhile gets a later number and waits for exec_mutex_.
    std::unique_lock<std::mutex> exec(exec_mutex_, std::try_to_lock);
    if (exec.owns_lock()) {
      uint64_t seq = unfinished_seq_.load(std::memory_order_relaxed);  // ours to write
      if (next_seq_.compare_exchange_strong(seq, seq + 1)) {
        const OperationSpec op{prepared(args, settings()), buffers, seq};
        const OperationSpec* ops[1] = {&op};
        Status s = execute(ops, 1);
        unfinished_seq_.store(seq + 1, std::memory_order_release);
        return s;
      }
    }
  }
  std::shared_ptr<Operation> op;
  CIUIC_RETURN_IF_ERROR(enqueue(args, buffers, &op));
  return wait(op);
}

// A split is a collective over this communicator's own connections: every rank opens the
// child's listener first, then one allgather carries (color, key, rank, endpoint record),
// and each child is built from those records. The bootstrap store is not involved, so a
// split works however long ago init was, and after rank 0's process has let its store go.
Status Communicator::split(int color, int key, std::unique_ptr<Communicator>* out) {
  out->reset();
  {
    std::lock_guard<std::mutex> exec(exec_mutex_);
    drive_queue(nullptr);  // a split is ordered after everything issued before it
  }
  if (broken_.load() || aborted_.load())
    return aborted_error("cannot split a communicator that failed or was aborted");
  const uint64_t seq = ++split_count_;
  const std::string ns =
      name_space_ + "/split" + std::to_string(seq) + "/color" + std::to_string(color);
  constexpr size_t kWords = 3 * sizeof(int32_t);
  std::vector<uint8_t> mine(kWords + kEndpointRecordBytes, 0);
  const int32_t words[3] = {color, key, rank_};
  std::memcpy(mine.data(), words, kWords);
  std::unique_ptr<Communicator> child;
  if (color >= 0) {
    // Rank and size are fixed once every color is known; the endpoint does not depend on them.
    child.reset(new Communicator());
    child->node_key_ = node_key_;
    child->timeout_ms_.store(timeout_ms_.load());
    std::vector<uint8_t> record;
    CIUIC_RETURN_IF_ERROR(child->open_endpoint(id_, ns, 0, 1, &record)
                              .prefix("split on rank " + std::to_string(rank_)));
    std::memcpy(mine.data() + kWords, record.data(), record.size());
  }
  std::vector<uint8_t> gathered(mine.size() * static_cast<size_t>(nranks_));
  coll::CollectiveArgs args;
  args.collective = coll::Collective::kAllgather;
  args.rank = rank_;
  args.nranks = nranks_;
  args.count = mine.size();
  args.datatype = CIUIC_UINT8;
  coll::Buffers buffers;
  buffers.send = mine.data();
  buffers.recv = gathered.data();
  CIUIC_RETURN_IF_ERROR(run(args, buffers).prefix("split on rank " + std::to_string(rank_)));
  if (color < 0) return Status::Ok();

  std::vector<std::pair<int, int>> members;  // (key, old rank)
  for (int r = 0; r < nranks_; ++r) {
    int32_t w[3];
    std::memcpy(w, gathered.data() + mine.size() * r, kWords);
    if (w[2] != r) return internal_error("split: malformed record from rank " + std::to_string(r));
    if (w[0] == color) members.emplace_back(w[1], w[2]);
  }
  std::sort(members.begin(), members.end());
  std::vector<std::vector<uint8_t>> records;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank_) child->rank_ = static_cast<int>(i);
    const uint8_t* rec = gathered.data() + mine.size() * members[i].second + kWords;
    records.emplace_back(rec, rec + kEndpointRecordBytes);
  }
  child->nranks_ = static_cast<int>(members.size());
  CIUIC_RETURN_IF_ERROR(child->adopt_peers(records));
  *out = std::move(child);
  return Status::Ok();
}

void Communicator::abort() {
  aborted_.store(true);
  uint64_t one = 1;
  if (wake_fd_.valid()) (void)!::write(wake_fd_.get(), &one, sizeof(one));
  queue_cv_.notify_all();
  std::unique_lock<std::mutex> exec(exec_mutex_, std::try_to_lock);
  // Nobody is driving: tell the peers now. Otherwise the driver sees the flag at its next
  // iteration (the wake fd interrupts its poll) and does it.
  if (exec.owns_lock())
    break_with(aborted_error("rank " + std::to_string(rank_) + " aborted the communicator"));
}

}  // namespace ciuic::core
