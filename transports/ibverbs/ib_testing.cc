#include "transports/ibverbs/ib_testing.h"

#include "transports/ibverbs/ib_channel.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

struct ChannelTestAccess {
  static void force_error(IbChannelCore* core) {
    std::lock_guard<std::mutex> lock(core->mutex_);
    if (core->ep_ != nullptr) core->ep_->set_error_state();  // and nothing else: no fail()
  }
  static Status force_error(SendChannel* channel) {
    auto* c = dynamic_cast<IbSendChannel*>(channel);
    if (c == nullptr) return invalid_argument("force_queue_pair_error: not an ibverbs send channel");
    force_error(static_cast<IbChannelCore*>(c));
    return Status::Ok();
  }
  static Status force_error(RecvChannel* channel) {
    auto* c = dynamic_cast<IbRecvChannel*>(channel);
    if (c == nullptr) return invalid_argument("force_queue_pair_error: not an ibverbs receive channel");
    force_error(static_cast<IbChannelCore*>(c));
    return Status::Ok();
  }
  static Status unfinished(const SendChannel* channel, std::vector<const Request*>* out) {
    auto* c = dynamic_cast<const IbSendChannel*>(channel);
    if (c == nullptr) return invalid_argument("unfinished_requests: not an ibverbs send channel");
    std::lock_guard<std::mutex> lock(c->mutex_);
    out->clear();
    for (const IbSendRequest& r : c->requests_)
      if (r.in_use && r.pending_wrs > 0) out->push_back(&r);
    return Status::Ok();
  }
  static Status unfinished(const RecvChannel* channel, std::vector<const Request*>* out) {
    auto* c = dynamic_cast<const IbRecvChannel*>(channel);
    if (c == nullptr) return invalid_argument("unfinished_requests: not an ibverbs receive channel");
    std::lock_guard<std::mutex> lock(c->mutex_);
    out->clear();
    for (const IbRecvRequest& r : c->requests_)
      if (r.in_use && !r.done) out->push_back(&r);
    return Status::Ok();
  }
};

namespace testing {
Status force_queue_pair_error(SendChannel* channel) { return ChannelTestAccess::force_error(channel); }
Status force_queue_pair_error(RecvChannel* channel) { return ChannelTestAccess::force_error(channel); }
Status unfinished_requests(const SendChannel* channel, std::vector<const Request*>* out) {
  return ChannelTestAccess::unfinished(channel, out);
}
Status unfinished_requests(const RecvChannel* channel, std::vector<const Request*>* out) {
  return ChannelTestAccess::unfinished(channel, out);
}
}  // namespace testing

#else

namespace testing {
Status force_queue_pair_error(SendChannel*) { return unsupported("built without <infiniband/verbs.h>"); }
Status force_queue_pair_error(RecvChannel*) { return unsupported("built without <infiniband/verbs.h>"); }
Status unfinished_requests(const SendChannel*, std::vector<const Request*>*) {
  return unsupported("built without <infiniband/verbs.h>");
}
Status unfinished_requests(const RecvChannel*, std::vector<const Request*>*) {
  return unsupported("built without <infiniband/verbs.h>");
}
}  // namespace testing

#endif

}  // namespace ciuic::transport::ib
