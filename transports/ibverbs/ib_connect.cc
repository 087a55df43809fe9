#include "transports/ibverbs/ib_connect.h"

#include <sys/socket.h>

#include "base/log.h"
#include "transports/ibverbs/ib_channel.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

// ---- listener ----

IbListener::IbListener(std::shared_ptr<Device> device, int64_t handshake_timeout_ms)
    : AuthenticatedListener(
          {"ibverbs listener", kHandshakeMagic, kWireVersion, handshake_timeout_ms, "READY"}),
      device_(std::move(device)) {}

Status IbListener::create(std::shared_ptr<Device> device, const net::SocketAddress& local,
                          int64_t handshake_timeout_ms, std::unique_ptr<Listener>* out) {
  std::unique_ptr<IbListener> l(new IbListener(std::move(device), handshake_timeout_ms));
  net::SocketAddress bound;
  CIUIC_RETURN_IF_ERROR(net::listen_on(local, common::kListenBacklog, &l->listen_fd_, &bound)
                            .prefix("ibverbs transport listener"));
  l->name_ = bound.to_string();
  kHandle.encode({bound, l->token_}, &l->handle_);
  CIUIC_LOG_TRACE(log::kNet, "ibverbs listener on %s for %s", l->name_.c_str(),
                  l->device_->describe().c_str());
  *out = std::move(l);
  return Status::Ok();
}

Status IbListener::decide(Pending* p, const std::vector<uint8_t>& payload,
                          std::vector<uint8_t>* reply) {
  auto* q = static_cast<QpPending*>(p);
  ConnRecord peer;
  CIUIC_RETURN_IF_ERROR(decode_record(payload.data(), payload.size(), &peer));
  CIUIC_RETURN_IF_ERROR(
      Endpoint::create(device_, configured_params(), peer.qp_count, &q->endpoint));
  CIUIC_RETURN_IF_ERROR(q->endpoint->connect_to(peer));
  ConnRecord mine;
  q->endpoint->fill_record(&mine);
  reply->resize(kConnRecordBytes);
  encode_record(mine, reply->data());
  return Status::Ok();
}

Status IbListener::after_handshake(Pending* p, bool* finished) {
  *finished = false;
  auto* q = static_cast<QpPending*>(p);
  // The connector's READY: its QPs are in RTS.
  size_t got = 0;
  Status s = net::recv_some(q->fd.get(), q->ready + q->ready_got, kSideHeaderBytes - q->ready_got,
                            &got);
  q->ready_got += got;
  if (!s.ok()) return remote_error(s.message() + " before its queue pairs were ready");
  if (q->ready_got < kSideHeaderBytes) return Status::Ok();
  SideFrame type;
  uint32_t length = 0;
  CIUIC_RETURN_IF_ERROR(decode_side_header(q->ready, &type, &length));
  if (type != SideFrame::kReady) return invalid_argument("sent something other than READY");
  CIUIC_LOG_TRACE(log::kNet, "%s: channel from %s (%s)", where().c_str(), q->peer.c_str(),
                  q->endpoint->describe().c_str());
  deliver(std::make_unique<IbRecvChannel>(std::move(q->endpoint), std::move(q->fd), q->peer));
  *finished = true;
  return Status::Ok();
}

// ---- connector ----

Status IbConnector::create(std::shared_ptr<Device> device, const ConnectHandle& handle,
                           int64_t handshake_timeout_ms, std::unique_ptr<Connector>* out) {
  common::SocketHandle contents;
  CIUIC_RETURN_IF_ERROR(kHandle.decode(handle, &contents));
  std::unique_ptr<IbConnector> c(new IbConnector());
  c->remote_ = contents.address;
  c->deadline_ = Deadline::after_ms(handshake_timeout_ms);
  IbParams params = configured_params();
  CIUIC_RETURN_IF_ERROR(Endpoint::create(device, params, params.qps_per_conn, &c->endpoint_));
  common::Dial::Setup setup;
  setup.remote = c->remote_;
  setup.handshake_magic = kHandshakeMagic;
  setup.wire_version = kWireVersion;
  setup.token = contents.token;
  ConnRecord mine;
  c->endpoint_->fill_record(&mine);
  setup.payload.resize(kConnRecordBytes);
  encode_record(mine, setup.payload.data());
  setup.deadline = c->deadline_;
  CIUIC_RETURN_IF_ERROR(c->dial_.start(std::move(setup))
                            .prefix("ibverbs transport: connecting to " + c->remote_.to_string()));
  encode_side_header(SideFrame::kReady, 0, c->ready_frame_);
  *out = std::move(c);
  return Status::Ok();
}

Status IbConnector::step() {
  if (!qps_ready_) {
    bool done = false;
    CIUIC_RETURN_IF_ERROR(dial_.progress(&done));
    if (!done) return Status::Ok();
    ConnRecord peer;
    const std::vector<uint8_t>& payload = dial_.reply();
    CIUIC_RETURN_IF_ERROR(decode_record(payload.data(), payload.size(), &peer)
                              .prefix("the listener's connection record"));
    CIUIC_RETURN_IF_ERROR(endpoint_->connect_to(peer));
    qps_ready_ = true;
  }
  if (ready_sent_ < kSideHeaderBytes) {
    CIUIC_RETURN_IF_ERROR(net::send_some(dial_.fd().get(), ready_frame_ + ready_sent_,
                                         kSideHeaderBytes - ready_sent_, &ready_sent_));
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
  *out = std::make_unique<IbSendChannel>(std::move(endpoint_), dial_.take_fd(),
                                         remote_.to_string());
  finished_ = true;
  return Status::Ok();
}

void IbConnector::collect_poll_fds(std::vector<pollfd>* fds) const {
  if (finished_ || !dial_.fd().valid()) return;
  short events = !qps_ready_ ? dial_.wanted_events() : POLLOUT;
  if (events != 0) fds->push_back(pollfd{dial_.fd().get(), events, 0});
}

#endif

}  // namespace ciuic::transport::ib
