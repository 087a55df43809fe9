// Test-only access to an ibverbs channel's queue pairs (tests/unit/ibverbs_channel_test.cc):
// what a failing adapter or link does to a connection, made to happen on purpose. Declared
// in this internal header only; nothing in the C API, the parameters or the environment
// reaches it.
#pragma once

#include "base/status.h"
#include "transports/transport.h"

namespace ciuic::transport::ib::testing {

// Moves every queue pair of `channel` (an ibverbs channel) to IBV_QPS_ERR behind the
// channel's back, as a hardware or link failure would: the channel learns of it only from
// the flushed completions, like of any other error.
Status force_queue_pair_error(SendChannel* channel);
Status force_queue_pair_error(RecvChannel* channel);

}  // namespace ciuic::transport::ib::testing
