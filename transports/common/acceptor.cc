#include "transports/common/acceptor.h"

#include "base/log.h"

namespace ciuic::transport::common {

AuthenticatedListener::AuthenticatedListener(const Setup& setup) : setup_(setup) {
  net::random_bytes(token_.data(), token_.size());
}

Status AuthenticatedListener::accept_socket(Pending* p) {
  net::SocketAddress address;
  CIUIC_RETURN_IF_ERROR(net::accept_one(listen_fd_.get(), &p->fd, &address));
  if (p->fd.valid()) p->peer = address.to_string();
  return Status::Ok();
}

void AuthenticatedListener::refuse(const Pending& p, const std::string& why) const {
  CIUIC_LOG_WARN(log::kNet, "%s: refused a connection from %s: %s", where().c_str(), p.peer.c_str(),
                 why.c_str());
}

void AuthenticatedListener::accept_new_sockets() {
  for (int i = 0; i < kAcceptsPerCall; ++i) {
    std::unique_ptr<Pending> p = make_pending();
    Status s = accept_socket(p.get());
    if (!s.ok()) {
      // Out of descriptors or similar: keep serving the connections already under way.
      CIUIC_LOG_WARN(log::kNet, "%s: %s", where().c_str(), s.message().c_str());
      return;
    }
    if (!p->fd.valid()) return;
    if (pending_.size() >= kMaxPendingConnections) {
      refuse(*p, "too many connections are still authenticating (" +
                     std::to_string(kMaxPendingConnections) + ")");
      continue;
    }
    p->deadline = Deadline::after_ms(setup_.handshake_timeout_ms);
    p->handshake = std::make_unique<Handshake>(p->fd.get(), Handshake::Role::kServer,
                                               setup_.handshake_magic, setup_.wire_version, token_,
                                               std::vector<uint8_t>{}, p->deadline, p->peer);
    pending_.push_back(std::move(p));
  }
}

bool AuthenticatedListener::advance(Pending* p) {
  if (!p->authenticated) {
    bool done = false;
    Status s = p->handshake->progress(&done);
    if (s.ok() && p->handshake->awaiting_decision()) {
      std::vector<uint8_t> reply;
      Status d = decide(p, p->handshake->peer_payload(), &reply);
      if (d.ok()) {
        p->decided = true;
        p->handshake->accept(std::move(reply));
      } else {
        p->handshake->refuse(d.message());
      }
      s = p->handshake->progress(&done);  // sends the verdict
    }
    if (!s.ok()) {
      refuse(*p, s.message());
      if (p->decided) accepted_then_lost(p);
      return true;
    }
    if (!done) return false;
    p->authenticated = true;
  }
  bool finished = false;
  Status s = after_handshake(p, &finished);
  if (s.ok() && !finished && p->deadline.expired())
    s = timeout_error(std::string("no ") + setup_.awaited_after_handshake +
                      " before the handshake deadline");
  if (!s.ok()) {
    refuse(*p, s.message());
    accepted_then_lost(p);  // authenticated, so decide() accepted it
    return true;
  }
  return finished;
}

Status AuthenticatedListener::accept(std::unique_ptr<RecvChannel>* out) {
  out->reset();
  accept_new_sockets();
  for (size_t i = 0; i < pending_.size();) {
    if (advance(pending_[i].get())) {
      pending_[i] = std::move(pending_.back());
      pending_.pop_back();
    } else {
      ++i;
    }
  }
  after_advance();
  if (!ready_.empty()) {
    *out = std::move(ready_.front());
    ready_.erase(ready_.begin());
  }
  return Status::Ok();
}

void AuthenticatedListener::collect_poll_fds(std::vector<pollfd>* fds) const {
  fds->push_back(pollfd{listen_fd_.get(), POLLIN, 0});
  for (const auto& p : pending_) {
    short events = p->authenticated ? POLLIN : p->handshake->wanted_events();
    if (events != 0) fds->push_back(pollfd{p->fd.get(), events, 0});
  }
}

}  // namespace ciuic::transport::common
