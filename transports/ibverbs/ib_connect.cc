#include "transports/ibverbs/ib_connect.h"

#include <sys/socket.h>

#include "base/log.h"
#include "transports/ibverbs/ib_channel.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

namespace {
constexpr int kListenBacklog = 1024;
constexpr size_t kMaxPendingSockets = 1024;
constexpr int kAcceptsPerCall = 64;
}  // namespace

// ---- listener ----

Status IbListener::create(std::shared_ptr<Device> device, const net::SocketAddress& local,
                          int64_t handshake_timeout_ms, std::unique_ptr<Listener>* out) {
  std::unique_ptr<IbListener> l(new IbListener());
  l->device_ = std::move(device);
  CIUIC_RETURN_IF_ERROR(net::listen_on(local, kListenBacklog, &l->listen_fd_, &l->bound_)
                            .prefix("ibverbs transport listener"));
  net::random_bytes(l->token_.data(), l->token_.size());
  encode_handle({l->bound_, l->token_}, &l->handle_);
  l->handshake_timeout_ms_ = handshake_timeout_ms;
  CIUIC_LOG_TRACE(log::kNet, "ibverbs listener on %s for %s", l->bound_.to_string().c_str(),
                  l->device_->describe().c_str());
  *out = std::move(l);
  return Status::Ok();
}

void IbListener::refuse(const Pending& p, const std::string& why) {
  CIUIC_LOG_WARN(log::kNet, "ibverbs listener %s: refused a connection from %s: %s",
                 bound_.to_string().c_str(), p.peer.to_string().c_str(), why.c_str());
}

void IbListener::accept_new_sockets() {
  for (int i = 0; i < kAcceptsPerCall; ++i) {
    auto p = std::make_unique<Pending>();
    Status s = net::accept_one(listen_fd_.get(), &p->fd, &p->peer);
    if (!s.ok()) {
      CIUIC_LOG_WARN(log::kNet, "ibverbs listener %s: %s", bound_.to_string().c_str(),
                     s.message().c_str());
      return;
    }
    if (!p->fd.valid()) return;
    if (pending_.size() >= kMaxPendingSockets) {
      refuse(*p, "too many connections are still being set up");
      continue;
    }
    p->deadline = Deadline::after_ms(handshake_timeout_ms_);
    p->handshake = std::make_unique<Handshake>(p->fd.get(), Handshake::Role::kServer,
                                               kHandshakeMagic, kWireVersion, token_,
                                               std::vector<uint8_t>{}, p->deadline,
                                               p->peer.to_string());
    pending_.push_back(std::move(p));
  }
}

Status IbListener::decide(Pending* p) {
  ConnRecord peer;
  const std::vector<uint8_t>& payload = p->handshake->peer_payload();
  CIUIC_RETURN_IF_ERROR(decode_record(payload.data(), payload.size(), &peer));
  CIUIC_RETURN_IF_ERROR(Endpoint::create(device_, configured_params(), peer.qp_count, &p->endpoint));
  CIUIC_RETURN_IF_ERROR(p->endpoint->connect_to(peer));
  ConnRecord mine;
  p->endpoint->fill_record(&mine);
  std::vector<uint8_t> reply(kConnRecordBytes);
  encode_record(mine, reply.data());
  p->handshake->accept(std::move(reply));
  return Status::Ok();
}

bool IbListener::advance(Pending* p) {
  if (!p->authenticated) {
    bool done = false;
    Status s = p->handshake->progress(&done);
    if (s.ok() && p->handshake->awaiting_decision()) {
      Status d = decide(p);
      if (!d.ok()) {
        p->handshake->refuse(d.message());
        (void)p->handshake->progress(&done);  // sends the refusal if the socket takes it
        refuse(*p, d.message());
        return true;
      }
      s = p->handshake->progress(&done);
    }
    if (!s.ok()) {
      refuse(*p, s.message());
      return true;
    }
    if (!done) return false;
    p->authenticated = true;
  }
  // The connector's READY: its QPs are in RTS.
  size_t got = 0;
  Status s = net::recv_some(p->fd.get(), p->ready + p->ready_got, kSideHeaderBytes - p->ready_got, &got);
  p->ready_got += got;
  if (!s.ok()) {
    refuse(*p, s.message() + " before its queue pairs were ready");
    return true;
  }
  if (p->ready_got < kSideHeaderBytes) {
    if (p->deadline.expired()) {
      refuse(*p, "no READY before the handshake deadline");
      return true;
    }
    return false;
  }
  SideFrame type;
  uint32_t length = 0;
  Status d = decode_side_header(p->ready, &type, &length);
  if (!d.ok() || type != SideFrame::kReady) {
    refuse(*p, d.ok() ? "sent something other than READY" : d.message());
    return true;
  }
  CIUIC_LOG_TRACE(log::kNet, "ibverbs listener %s: channel from %s (%s)",
                  bound_.to_string().c_str(), p->peer.to_string().c_str(),
                  p->endpoint->describe().c_str());
  ready_.push_back(std::make_unique<IbRecvChannel>(std::move(p->endpoint), std::move(p->fd),
                                                   p->peer.to_string()));
  return true;
}

Status IbListener::accept(std::unique_ptr<RecvChannel>* out) {
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
  if (!ready_.empty()) {
    *out = std::move(ready_.front());
    ready_.erase(ready_.begin());
  }
  return Status::Ok();
}

void IbListener::collect_poll_fds(std::vector<pollfd>* fds) const {
  fds->push_back(pollfd{listen_fd_.get(), POLLIN, 0});
  for (const auto& p : pending_) {
    short events = p->authenticated ? POLLIN : p->handshake->wanted_events();
    if (events != 0) fds->push_back(pollfd{p->fd.get(), events, 0});
  }
}

// ---- connector ----

Status IbConnector::create(std::shared_ptr<Device> device, const ConnectHandle& handle,
                           int64_t handshake_timeout_ms, std::unique_ptr<Connector>* out) {
  HandleContents contents;
  CIUIC_RETURN_IF_ERROR(decode_handle(handle, &contents));
  std::unique_ptr<IbConnector> c(new IbConnector());
  c->remote_ = contents.address;
  c->deadline_ = Deadline::after_ms(handshake_timeout_ms);
  IbParams params = configured_params();
  CIUIC_RETURN_IF_ERROR(Endpoint::create(device, params, params.qps_per_conn, &c->endpoint_));
  CIUIC_RETURN_IF_ERROR(net::connect_start(c->remote_, &c->fd_)
                            .prefix("ibverbs transport: connecting to " + c->remote_.to_string()));
  ConnRecord mine;
  c->endpoint_->fill_record(&mine);
  std::vector<uint8_t> payload(kConnRecordBytes);
  encode_record(mine, payload.data());
  c->handshake_ = std::make_unique<Handshake>(c->fd_.get(), Handshake::Role::kClient,
                                              kHandshakeMagic, kWireVersion, contents.token,
                                              std::move(payload), c->deadline_,
                                              c->remote_.to_string());
  encode_side_header(SideFrame::kReady, 0, c->ready_frame_);
  *out = std::move(c);
  return Status::Ok();
}

Status IbConnector::step() {
  if (!connected_) {
    bool writable = false;
    CIUIC_RETURN_IF_ERROR(net::wait_fd(fd_.get(), POLLOUT, 0, &writable));
    if (!writable) {
      if (deadline_.expired()) return timeout_error("no TCP connection before the handshake deadline");
      return Status::Ok();
    }
    CIUIC_RETURN_IF_ERROR(net::connect_finished(fd_.get(), remote_));
    connected_ = true;
  }
  if (!qps_ready_) {
    bool done = false;
    CIUIC_RETURN_IF_ERROR(handshake_->progress(&done));
    if (!done) return Status::Ok();
    ConnRecord peer;
    const std::vector<uint8_t>& payload = handshake_->peer_payload();
    CIUIC_RETURN_IF_ERROR(decode_record(payload.data(), payload.size(), &peer)
                              .prefix("the listener's connection record"));
    CIUIC_RETURN_IF_ERROR(endpoint_->connect_to(peer));
    qps_ready_ = true;
  }
  if (ready_sent_ < kSideHeaderBytes) {
    CIUIC_RETURN_IF_ERROR(
        net::send_some(fd_.get(), ready_frame_ + ready_sent_, kSideHeaderBytes - ready_sent_, &ready_sent_));
    if (ready_sent_ < kSideHeaderBytes && deadline_.expired())
      return timeout_error("the READY frame did not leave before the handshake deadline");
  }
  return Status::Ok();
}

Status IbConnector::progress(std::unique_ptr<SendChannel>* out) {
  out->reset();
  if (!failed_.ok()) return failed_;
  if (finished_) return invalid_argument("this connector already gave its channel");
  Status s = step();
  if (!s.ok()) return failed_ = s.prefix("ibverbs: connecting to " + remote_.to_string());
  if (ready_sent_ < kSideHeaderBytes) return Status::Ok();
  *out = std::make_unique<IbSendChannel>(std::move(endpoint_), std::move(fd_), remote_.to_string());
  finished_ = true;
  return Status::Ok();
}

void IbConnector::collect_poll_fds(std::vector<pollfd>* fds) const {
  if (finished_ || !fd_.valid()) return;
  short events = !connected_ ? POLLOUT : !qps_ready_ ? handshake_->wanted_events() : POLLOUT;
  if (events != 0) fds->push_back(pollfd{fd_.get(), events, 0});
}

#endif

}  // namespace ciuic::transport::ib
