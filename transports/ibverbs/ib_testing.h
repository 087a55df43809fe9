// Test-only access to an ibverbs channel's queue pairs (tests/unit/ibverbs_channel_test.cc):
// what a failing adapter or link does to a connection, made to happen on purpose. Declared
// in this internal header only; nothing in the C API, the parameters or the environment
// reaches it.
#pragma once

#include <vector>

#include "base/status.h"
#include "transports/transport.h"

namespace ciuic::transport::ib::testing {

// Moves every queue pair of `channel` (an ibverbs channel) to IBV_QPS_ERR behind the
// channel's back, as a hardware or link failure would: the channel learns of it only from
// the flushed completions, like of any other error.
Status force_queue_pair_error(SendChannel* channel);
Status force_queue_pair_error(RecvChannel* channel);

// The requests of `channel` not complete yet: sends with work requests still outstanding,
// receives the sender has not closed yet.
Status unfinished_requests(const SendChannel* channel, std::vector<const Request*>* out);
Status unfinished_requests(const RecvChannel* channel, std::vector<const Request*>* out);

}  // namespace ciuic::transport::ib::testing
