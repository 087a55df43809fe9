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
    if (c == nullptr)
      return invalid_argument("force_queue_pair_error: not an ibverbs send channel");
    force_error(static_cast<IbChannelCore*>(c));
    return Status::Ok();
  }
  static Status force_error(RecvChannel* channel) {
    auto* c = dynamic_cast<IbRecvChannel*>(channel);
    if (c == nullptr)
      return invalid_argument("force_queue_pair_error: not an ibverbs receive channel");
    force_error(static_cast<IbChannelCore*>(c));
    return Status::Ok();
  }
};

namespace testing {
Status force_queue_pair_error(SendChannel* channel) {
  return ChannelTestAccess::force_error(channel);
}
Status force_queue_pair_error(RecvChannel* channel) {
  return ChannelTestAccess::force_error(channel);
}
}  // namespace testing

#else

namespace testing {
Status force_queue_pair_error(SendChannel*) {
  return unsupported("built without <infiniband/verbs.h>");
}
Status force_queue_pair_error(RecvChannel*) {
  return unsupported("built without <infiniband/verbs.h>");
}
}  // namespace testing

#endif

}  // namespace ciuic::transport::ib
