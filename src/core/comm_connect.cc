// How a communicator's channels come up: connect_peers, on the first operation that needs a
// peer, dials and accepts through the endpoints and greets each new channel; and the
// peers' descriptions that every error message names.
#include "base/log.h"
#include "core/comm.h"
#include "core/endpoints.h"

namespace ciuic::core {
namespace {

constexpr uint32_t kHelloMagic = 0x4349484c;  // "CIHL": first message on every channel
constexpr int kHelloTag = 0x43494800;         // its tag: no rank has this number

}  // namespace

transport::SendChannel* Communicator::send_channel(int peer) { return peers_[peer].send.get(); }
transport::RecvChannel* Communicator::recv_channel(int peer) { return peers_[peer].recv.get(); }

std::string Communicator::describe_peer(int peer) {
  if (peer < 0 || peer >= nranks_) return "rank " + std::to_string(peer);
  const Peer& p = peers_[peer];
  std::string where = p.send ? p.send->peer_description() : "";
  return peer_names_[peer] + (where.empty() ? "" : " (" + where + ")");
}

Status Communicator::connect_peers(const coll::Schedule& schedule, Deadline deadline) {
  // The common case, every channel up: read off the schedule's peer lists (finalize()),
  // with no allocation, no syscall, no accept() polling.
  bool connected = true;
  for (const coll::Schedule::PeerSteps& ps : schedule.peers) {
    const Peer& peer = peers_[ps.peer];
    connected = connected && (ps.sends.empty() || (peer.send && peer.hello_sent)) &&
                (ps.recvs.empty() || peer.recv);
  }
  if (connected) return Status::Ok();
  std::vector<bool> need_send(static_cast<size_t>(nranks_)),
      need_recv(static_cast<size_t>(nranks_));
  for (const coll::Step& st : schedule.steps) {
    if (st.kind == coll::StepKind::kSend) need_send[st.peer] = true;
    if (st.kind == coll::StepKind::kRecv) need_recv[st.peer] = true;
  }
  int idle = 0;
  for (;;) {
    bool missing = false, progressed = false;
    for (int p = 0; p < nranks_; ++p) {
      Peer& peer = peers_[p];
      if (!need_send[p] || (peer.send && peer.hello_sent)) continue;
      missing = true;
      if (!peer.send) {
        if (!peer.connecting)
          CIUIC_RETURN_IF_ERROR((peer.local ? local_ : network_)
                                    .transport->connect(0, peer.handle, &peer.connecting)
                                    .prefix("connecting to " + describe_peer(p)));
        CIUIC_RETURN_IF_ERROR(
            peer.connecting->progress(&peer.send).prefix("connecting to " + describe_peer(p)));
        if (!peer.send) continue;
        peer.connecting.reset();
        progressed = true;
      }
      // The first message tells the accepting side who we are (sent to completion below,
      // so the buffer may live on the stack).
      const uint32_t hello[2] = {kHelloMagic, static_cast<uint32_t>(rank_)};
      transport::Request* req = nullptr;
      CIUIC_RETURN_IF_ERROR(peer.send->isend(hello, sizeof(hello), kHelloTag, nullptr, &req)
                                .prefix("greeting " + describe_peer(p)));
      bool done = false;
      while (req != nullptr && !done) {
        CIUIC_RETURN_IF_ERROR(
            peer.send->test(req, &done, nullptr).prefix("greeting " + describe_peer(p)));
        if (deadline.expired()) return timeout_error("greeting " + describe_peer(p) + " timed out");
      }
      peer.hello_sent = req != nullptr;
    }
    // Accept whoever is connecting, and learn who they are from their first message.
    for (Endpoint* endpoint : {&network_, &local_}) {
      while (endpoint->listener) {
        std::unique_ptr<transport::RecvChannel> channel;
        CIUIC_RETURN_IF_ERROR(endpoint->listener->accept(&channel).prefix(
            std::string("accepting a connection (") + endpoint->transport->name() + ")"));
        if (!channel) break;
        greetings_.push_back(std::make_unique<Greeting>());
        greetings_.back()->channel = std::move(channel);
        progressed = true;
      }
    }
    for (size_t g = 0; g < greetings_.size();) {
      Greeting& greet = *greetings_[g];
      if (greet.request == nullptr) {
        void* data = greet.words;
        size_t size = sizeof(greet.words);
        int tag = kHelloTag;
        transport::MemoryRegion* region = nullptr;
        CIUIC_RETURN_IF_ERROR(greet.channel->irecv(1, &data, &size, &tag, &region, &greet.request));
        if (greet.request == nullptr) {
          ++g;
          continue;
        }
      }
      bool done = false;
      size_t got = 0;
      Status s = greet.channel->test(greet.request, &done, &got);
      if (!s.ok()) {
        CIUIC_LOG_WARN(log::kNet, "dropping a connection that failed before greeting: %s",
                       s.message().c_str());
        greetings_.erase(greetings_.begin() + static_cast<long>(g));
        continue;
      }
      if (!done) {
        ++g;
        continue;
      }
      int from = static_cast<int>(greet.words[1]);
      if (got != sizeof(greet.words) || greet.words[0] != kHelloMagic || from < 0 ||
          from >= nranks_ || peers_[from].recv) {
        CIUIC_LOG_WARN(log::kNet, "rank %d: dropping a connection with a bad greeting (from %d)",
                       rank_, from);
      } else {
        peers_[from].recv = std::move(greet.channel);
      }
      greetings_.erase(greetings_.begin() + static_cast<long>(g));
      progressed = true;
    }
    for (int p = 0; p < nranks_; ++p)
      if (need_recv[p] && !peers_[p].recv) missing = true;
    if (!missing) return Status::Ok();
    if (aborted_.load()) return aborted_error("the communicator was aborted while connecting");
    if (deadline.expired()) {
      std::string who;
      for (int p = 0; p < nranks_; ++p) {
        if (need_send[p] && !peers_[p].send) who += " send to " + describe_peer(p) + ";";
        if (need_recv[p] && !peers_[p].recv) who += " receive from " + describe_peer(p) + ";";
      }
      return timeout_error("rank " + std::to_string(rank_) + " could not connect within " +
                           std::to_string(timeout_ms()) + " ms:" + who +
                           " is that rank alive and reachable?");
    }
    if (progressed) {
      idle = 0;
      continue;
    }
    if (++idle < 16) continue;
    std::vector<pollfd> fds;
    network_.listener->collect_poll_fds(&fds);
    if (local_.listener) local_.listener->collect_poll_fds(&fds);
    for (const Peer& peer : peers_)
      if (peer.connecting) peer.connecting->collect_poll_fds(&fds);
    for (const auto& greet : greetings_) greet->channel->collect_poll_fds(&fds);
    fds.push_back(pollfd{wake_fd_.get(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), deadline.poll_timeout_ms(50));
  }
}

}  // namespace ciuic::core
