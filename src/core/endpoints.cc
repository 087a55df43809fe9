// The communicator's endpoints (endpoints.h): the transports and listeners a rank opens,
// the record it publishes, and what it learns from every rank's record (how to reach each
// peer, which node each rank is on). The rest of the communicator: comm.cc.
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/config.h"
#include "base/log.h"
#include "core/comm.h"
#include "core/endpoints.h"

namespace ciuic::core {
namespace {

const config::StringParam kTransport{
    "CIUIC_TRANSPORT", "auto",
    "Transport between ranks: auto or a registered name (ibverbs, tcp; shm for one host)"};
const config::StringParam kLocalTransport{
    "CIUIC_LOCAL_TRANSPORT", "auto",
    "Transport between ranks on the same node: auto (shared memory when CIUIC_TRANSPORT is "
    "auto, else CIUIC_TRANSPORT's), none (the network transport for every peer) or a name"};
const config::StringParam kHostId{
    "CIUIC_HOSTID", "",
    "This rank's host identity (default: the host name). Ranks with different values share "
    "no memory and count as different nodes, as NCCL_HOSTID does for NCCL"};
const config::IntParam kLocalSize{
    "CIUIC_LOCAL_SIZE", 0,
    "Ranks per node in rank order (rank r on node r/k) for the hierarchical algorithms and the "
    "local transport; 0: ranks are grouped by host"};

const transport::TransportEntry* find_entry(std::string_view name) {
  for (const auto& e : transport::registered_transports())
    if (name == e.name) return &e;
  return nullptr;
}

// Who can share memory and a Unix socket with this process: the same boot of the same
// machine (boot id) and the same network namespace (abstract sockets live in one). Host
// names alone are not enough: containers and namespaces on one machine share them.
std::string memory_scope() {
  std::string scope;
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char id[64] = {};
    if (std::fgets(id, sizeof(id), f) != nullptr) scope.assign(id, strcspn(id, "\n"));
    std::fclose(f);
  }
  struct stat ns {};
  if (::stat("/proc/self/ns/net", &ns) == 0) scope += ":" + std::to_string(ns.st_ino);
  return scope;
}

// A NUL-terminated string of at most kHostNameBytes-1 characters at `at`.
std::string record_text(const std::vector<uint8_t>& rec, size_t at) {
  const char* p = reinterpret_cast<const char*>(rec.data() + at);
  return std::string(p, strnlen(p, kHostNameBytes));
}

}  // namespace

std::string configured_transport() { return kTransport.get(); }

Status Communicator::open_endpoint(const UniqueId& id, const std::string& name_space, int rank,
                                   int nranks, std::vector<uint8_t>* record) {
  rank_ = rank;
  nranks_ = nranks;
  id_ = id;
  name_space_ = name_space;
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_.valid()) return errno_error("eventfd", errno);
  const std::string where = "rank " + std::to_string(rank) + " of " + std::to_string(nranks);
  transport::TransportOptions options;
  options.handshake_timeout_ms = configured_timeout_ms();
  CIUIC_RETURN_IF_ERROR(
      transport::create_transport(kTransport.get(), options, &network_.transport, &network_.why)
          .prefix(where));
  CIUIC_RETURN_IF_ERROR(network_.transport->listen(0, &network_.listener).prefix(where));
  CIUIC_RETURN_IF_ERROR(open_local_endpoint(options).prefix(where));

  record->assign(kEndpointRecordBytes, 0);
  (*record)[0] = local_.listener ? kHasLocalListener : 0;
  std::memcpy(record->data() + kNetHandleAt, network_.listener->handle().bytes,
              transport::kHandleBytes);
  if (local_.listener)
    std::memcpy(record->data() + kLocalHandleAt, local_.listener->handle().bytes,
                transport::kHandleBytes);
  char host[kHostNameBytes] = {};
  gethostname(host, sizeof(host) - 1);
  std::memcpy(record->data() + kHostNameAt, host, strnlen(host, kHostNameBytes - 1));
  if (node_key_.empty()) {
    const int64_t local_size = kLocalSize.get();
    if (local_size > 0)
      node_key_ = "block " + std::to_string(rank / local_size);
    else
      node_key_ = kHostId.get().empty() ? std::string(host) : "id " + kHostId.get();
  }
  std::memcpy(record->data() + kNodeKeyAt, node_key_.data(),
              std::min(node_key_.size(), kHostNameBytes - 1));
  const std::string scope = memory_scope();
  std::memcpy(record->data() + kMemoryScopeAt, scope.data(),
              std::min(scope.size(), kHostNameBytes - 1));
  return Status::Ok();
}

// The same-node transport: CIUIC_LOCAL_TRANSPORT names it, or "auto" takes the first
// same-host-only entry of the registry that works (only when the network transport was
// auto's pick too: a forced CIUIC_TRANSPORT means every byte goes over it).
Status Communicator::open_local_endpoint(const transport::TransportOptions& options) {
  const std::string wanted = kLocalTransport.get();
  if (wanted == "none" || wanted.empty()) return Status::Ok();
  if (wanted == "auto") {
    if (kTransport.get() != "auto") return Status::Ok();
    std::string skipped;
    for (const auto& e : transport::registered_transports()) {
      if (!e.same_host_only) continue;
      Status s = e.create(options, &local_.transport);
      if (!s.ok()) {
        skipped += std::string("; ") + e.name + " unavailable: " + s.message();
        continue;
      }
      s = local_.transport->listen(0, &local_.listener);
      if (s.ok()) {
        local_.why = std::string("auto chose ") + e.name + " for peers on this node" + skipped;
        return Status::Ok();
      }
      CIUIC_LOG_INFO(log::kInit, "%s cannot listen (%s): peers on this node use %s", e.name,
                     s.message().c_str(), network_.transport->name());
      local_ = Endpoint();
      return Status::Ok();
    }
    return Status::Ok();
  }
  if (wanted == network_.transport->name()) return Status::Ok();  // one listener serves all
  CIUIC_RETURN_IF_ERROR(transport::create_transport(wanted, options, &local_.transport, &local_.why)
                            .prefix("CIUIC_LOCAL_TRANSPORT"));
  return local_.transport->listen(0, &local_.listener).prefix("CIUIC_LOCAL_TRANSPORT " + wanted);
}

Status Communicator::adopt_peers(const std::vector<std::vector<uint8_t>>& records) {
  const std::string where = "rank " + std::to_string(rank_) + " of " + std::to_string(nranks_);
  if (records.size() != static_cast<size_t>(nranks_))
    return internal_error(where + ": " + std::to_string(records.size()) + " endpoint records for " +
                          std::to_string(nranks_) + " ranks");
  for (int r = 0; r < nranks_; ++r) {
    const std::vector<uint8_t>& rec = records[r];
    if (rec.size() != kEndpointRecordBytes || rec[kNodeKeyAt - 1] != 0 ||
        rec[kMemoryScopeAt - 1] != 0 || rec.back() != 0)
      return internal_error(where + ": malformed endpoint record from rank " + std::to_string(r));
  }
  const std::string my_host = record_text(records[rank_], kHostNameAt);
  const std::string my_scope = record_text(records[rank_], kMemoryScopeAt);
  const transport::TransportEntry* network_entry = find_entry(network_.transport->name());
  const bool network_same_host_only = network_entry != nullptr && network_entry->same_host_only;
  peer_names_.resize(static_cast<size_t>(nranks_));
  peers_.resize(static_cast<size_t>(nranks_));
  auto nodes = std::make_shared<std::vector<int>>(static_cast<size_t>(nranks_));
  std::vector<std::string> node_keys;
  int local_ranks = 0, node_peers = 0, node_count = 0;
  for (int r = 0; r < nranks_; ++r) {
    const std::vector<uint8_t>& rec = records[r];
    const std::string host = record_text(rec, kHostNameAt);
    const std::string key = record_text(rec, kNodeKeyAt);
    auto found = std::find(node_keys.begin(), node_keys.end(), key);
    (*nodes)[r] = static_cast<int>(found - node_keys.begin());
    if (found == node_keys.end()) node_keys.push_back(key);
    peer_names_[r] = "rank " + std::to_string(r) + " on " + host;
    if (host == my_host) ++local_ranks;
    const bool shares_memory = host == my_host && record_text(rec, kMemoryScopeAt) == my_scope;
    if (network_same_host_only && !shares_memory)
      return invalid_argument(where + ": CIUIC_TRANSPORT=" + network_.transport->name() +
                              " reaches only ranks on this host (" + my_host + "), but rank " +
                              std::to_string(r) + " is on " + host +
                              (host == my_host ? " in another boot or network namespace" : "") +
                              ": use a network transport (tcp, ibverbs)");
    Peer& peer = peers_[r];
    peer.local = local_.listener && (rec[0] & kHasLocalListener) && shares_memory &&
                 key == node_key_ && r != rank_;
    std::memcpy(peer.handle.bytes, rec.data() + (peer.local ? kLocalHandleAt : kNetHandleAt),
                transport::kHandleBytes);
    if (peer.local) ++node_peers;
  }
  node_count = static_cast<int>(node_keys.size());
  node_of_rank_ = std::move(nodes);
  // More ranks on this host than cores we may run on: a waiting rank yields its core to
  // one with work (as Open MPI does when oversubscribed); otherwise it polls undisturbed.
  cpu_set_t cpus;
  const int cores = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  oversubscribed_ = local_ranks > cores;
  transport::DeviceProperties props;
  CIUIC_RETURN_IF_ERROR(network_.transport->device_properties(0, &props).prefix(where));
  std::string local_text;
  if (local_.transport)
    local_text = ", " + std::string(local_.transport->name()) + " to " +
                 std::to_string(node_peers) + " peer(s) on this node (" + local_.why + ")";
  CIUIC_LOG_INFO(log::kInit,
                 "ciuic %d.%d.%d %s (%s): transport %s, device %s, %s%s; %d node(s), %d ranks on "
                 "this host, %d cores: %s when idle",
                 CIUIC_VERSION_MAJOR, CIUIC_VERSION_MINOR, CIUIC_VERSION_PATCH, where.c_str(),
                 name_space_.c_str(), network_.transport->name(), props.name.c_str(),
                 network_.why.c_str(), local_text.c_str(), node_count, local_ranks, cores,
                 oversubscribed_ ? "yield" : "poll");
  return Status::Ok();
}

}  // namespace ciuic::core
