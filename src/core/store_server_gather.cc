// The store's namespaces and allgathers: who joined, who contributed, who left, and
// what each waiting rank is told when a gather completes, times out or cannot complete.
#include "base/log.h"
#include "core/store_server_impl.h"

namespace ciuic::core::store_detail {
namespace {

constexpr size_t kMissingRanksListed = 16;

// "missing ranks: 2, 3 (of 4); never connected to the root: 3; arrived but timed out
// earlier: 1"
std::string describe_missing(const Namespace& ns, const PendingGather& gather) {
  std::string missing, never_joined, gave_up;
  size_t count = 0;
  for (size_t q = 0; q < gather.slots.size(); ++q) {
    if (gather.slots[q]) continue;
    if (++count > kMissingRanksListed) continue;
    std::string rank = std::to_string(q);
    missing += (missing.empty() ? "" : ", ") + rank;
    if (ns.members[q].state == Member::kAbsent)
      never_joined += (never_joined.empty() ? "" : ", ") + rank;
    else if (gather.gave_up[q])
      gave_up += (gave_up.empty() ? "" : ", ") + rank;
  }
  if (count > kMissingRanksListed)
    missing += " and " + std::to_string(count - kMissingRanksListed) + " more";
  std::string text = "missing ranks: " + missing + " (of " + std::to_string(ns.nranks) + ")";
  if (!never_joined.empty()) text += "; never connected to the root: " + never_joined;
  if (!gave_up.empty()) text += "; arrived but timed out earlier: " + gave_up;
  return text;
}

}  // namespace

void StoreServerImpl::decide(Connection& c) {
  store::Join join;
  Status s = store::decode_join(c.handshake->peer_payload(), &join);
  if (!s.ok()) {
    c.handshake->refuse("malformed join: " + s.message());
    return;
  }
  const std::string rank_text = "rank " + std::to_string(join.rank);
  if (join.nranks < 1 || join.nranks > store::kMaxRanks) {
    c.handshake->refuse("nranks " + std::to_string(join.nranks) + " out of range [1, " +
                        std::to_string(store::kMaxRanks) + "]");
    return;
  }
  if (join.rank < 0 || join.rank >= join.nranks) {
    c.handshake->refuse(rank_text + " out of range for " + std::to_string(join.nranks) +
                        " ranks");
    return;
  }
  auto it = namespaces_.find(join.name_space);
  if (it == namespaces_.end()) {
    it = namespaces_.emplace(join.name_space, Namespace{}).first;
    it->second.nranks = join.nranks;
    it->second.members.resize(static_cast<size_t>(join.nranks));
  }
  Namespace& ns = it->second;
  if (ns.nranks != join.nranks) {
    c.handshake->refuse(rank_text + " says namespace '" + join.name_space + "' has " +
                        std::to_string(join.nranks) + " ranks, but it has " +
                        std::to_string(ns.nranks) + ": every rank must pass the same nranks");
    return;
  }
  Member& m = ns.members[static_cast<size_t>(join.rank)];
  if (m.state != Member::kAbsent) {
    c.handshake->refuse(rank_text + " already joined namespace '" + join.name_space + "' from " +
                        m.peer + (m.state == Member::kLeft ? " (and left)" : ""));
    return;
  }
  m.state = Member::kJoined;
  m.connection = c.id;
  m.peer = c.peer;
  ++ns.live;
  c.joined = true;
  c.name_space = join.name_space;
  c.rank = join.rank;
  c.handshake->accept({});
}

void StoreServerImpl::handle_allgather(Connection& c, std::string tag, std::vector<uint8_t> value,
                                       uint32_t wait_ms) {
  Namespace& ns = namespaces_.at(c.name_space);
  if (ns.first_left) {
    const Member& gone = ns.members[static_cast<size_t>(*ns.first_left)];
    send_error(c, store::kPeerLeft, tag,
               "rank " + std::to_string(*ns.first_left) + " has left (its connection from " +
                   gone.peer + " closed), so no allgather of this namespace can complete");
    return;
  }
  PendingGather& gather = ns.pending[tag];
  if (gather.slots.empty()) {
    gather.slots.resize(static_cast<size_t>(ns.nranks));
    gather.gave_up.resize(static_cast<size_t>(ns.nranks));
  }
  gather.gave_up[static_cast<size_t>(c.rank)] = false;
  auto& slot = gather.slots[static_cast<size_t>(c.rank)];
  ++gather.contributed;  // never twice: a second request while awaiting drops the connection
  slot = Contribution{std::move(value), wait_ms,
                      wait_ms == store::kWaitForever ? Deadline::never()
                                                     : Deadline::after_ms(wait_ms)};
  c.awaiting = true;
  CIUIC_LOG_TRACE(log::kBoot, "bootstrap store: %s contributed to '%s' (%d of %d)",
                  describe(c).c_str(), tag.c_str(), gather.contributed, ns.nranks);
  if (gather.contributed == ns.nranks) {
    complete(ns, tag, gather);
    ns.pending.erase(tag);
  }
}

void StoreServerImpl::complete(Namespace& ns, const std::string& tag, PendingGather& gather) {
  uint64_t body_len = tag.size();
  for (auto& slot : gather.slots) body_len += 4 + slot->value.size();
  auto reply = std::make_shared<std::vector<uint8_t>>(store::kReplyHeaderBytes);
  reply->reserve(store::kReplyHeaderBytes + body_len);
  store::ReplyHeader h;
  h.status = store::kOk;
  h.tag_len = static_cast<uint16_t>(tag.size());
  h.count = static_cast<uint32_t>(ns.nranks);
  h.body_len = body_len;
  store::encode_reply_header(h, reply->data());
  reply->insert(reply->end(), tag.begin(), tag.end());
  for (auto& slot : gather.slots) {
    store::put_u32(*reply, static_cast<uint32_t>(slot->value.size()));
    reply->insert(reply->end(), slot->value.begin(), slot->value.end());
  }
  Buffer shared = std::move(reply);
  for (size_t r = 0; r < gather.slots.size(); ++r) {
    Connection* member = find(ns.members[r].connection);
    if (member == nullptr || member->dead) continue;
    member->awaiting = false;
    enqueue(*member, shared);
  }
}

void StoreServerImpl::send_error(Connection& c, uint16_t status, const std::string& tag,
                                 std::string message) {
  if (message.size() > store::kMaxErrorBytes) message.resize(store::kMaxErrorBytes);
  auto reply = std::make_shared<std::vector<uint8_t>>(store::kReplyHeaderBytes);
  store::ReplyHeader h;
  h.status = status;
  h.tag_len = static_cast<uint16_t>(tag.size());
  h.body_len = tag.size() + message.size();
  store::encode_reply_header(h, reply->data());
  reply->insert(reply->end(), tag.begin(), tag.end());
  reply->insert(reply->end(), message.begin(), message.end());
  c.awaiting = false;
  enqueue(c, std::move(reply));
}

void StoreServerImpl::leave(Connection& c) {
  auto ns_it = namespaces_.find(c.name_space);
  if (ns_it == namespaces_.end()) return;
  Namespace& ns = ns_it->second;
  Member& m = ns.members[static_cast<size_t>(c.rank)];
  m.state = Member::kLeft;
  --ns.live;
  if (!ns.first_left) ns.first_left = c.rank;
  for (auto it = ns.pending.begin(); it != ns.pending.end();) {
    PendingGather& gather = it->second;
    if (gather.slots[static_cast<size_t>(c.rank)]) {
      ++it;  // it contributed: the others can still complete
      continue;
    }
    // The client prefixes the tag and namespace it asked about.
    std::string message = "rank " + std::to_string(c.rank) + " left (its connection from " +
                          c.peer + " closed) before contributing";
    for (size_t r = 0; r < gather.slots.size(); ++r) {
      if (!gather.slots[r]) continue;
      Connection* waiting = find(ns.members[r].connection);
      if (waiting != nullptr && !waiting->dead) send_error(*waiting, store::kPeerLeft, it->first, message);
    }
    it = ns.pending.erase(it);
  }
  if (ns.live == 0) namespaces_.erase(ns_it);
}

void StoreServerImpl::check_deadlines() {
  for (auto& [id, c] : connections_) {
    if (c->handshake && !c->dead && c->handshake_deadline.expired()) advance_handshake(*c);
  }
  for (auto& [name, ns] : namespaces_) {
    for (auto& [tag, gather] : ns.pending) {
      std::vector<size_t> expired;
      for (size_t r = 0; r < gather.slots.size(); ++r)
        if (gather.slots[r] && gather.slots[r]->deadline.expired()) expired.push_back(r);
      if (expired.empty()) continue;
      // Described before any of them withdraws, so ranks expiring together do not
      // name each other.
      std::string who = describe_missing(ns, gather);
      for (size_t r : expired) {
        std::string message = "not all ranks arrived within " +
                              std::to_string(gather.slots[r]->wait_ms) + " ms; " + who;
        // Withdrawn: a retry by this rank is a fresh contribution, never a stale one.
        gather.slots[r].reset();
        gather.gave_up[r] = true;
        --gather.contributed;
        Connection* waiting = find(ns.members[r].connection);
        if (waiting != nullptr && !waiting->dead) send_error(*waiting, store::kTimeout, tag, message);
      }
    }
  }
}

}  // namespace ciuic::core::store_detail
