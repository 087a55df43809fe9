// The conformance suite (transport_conformance.h) for ibverbs, on a real RDMA device
// (Soft-RoCE in tests/rdma-vm, or an adapter); without one every test skips, saying why.
// A send waits until its receive is announced in the sender's FIFO, and the sender matches
// tags and sizes: it is the side that finds a mismatch, and the receiver hears why.
#include "transports/common/handle_codec.h"
#include "unit/transport_conformance.h"

namespace ciuic::transport::transport_test {
namespace {

std::string loopback() { return "127.0.0.1"; }

TransportCase ib_case() {
  TransportCase c;
  c.label = "ibverbs";
  c.transport = "ibverbs";
  c.config = {{"CIUIC_SOCKET_IFNAME", "lo"}};
  c.peer = &loopback;
  c.description = "(ibverbs ";
  c.needs_device = true;
  c.sender_matches = true;
  c.host_memory_only = false;
  c.token_offset = common::kHandleHeaderBytes + net::SocketAddress::kPackedBytes;
  c.refused_peer = "127.0.0.1:";
  // Most messages small, a few up to 4 MiB: rxe under emulation is slow.
  c.stream_count = 2000;
  c.stream_max_bytes = size_t{64} << 10;
  c.stream_large_bytes = size_t{4} << 20;
  c.largest_message = size_t{4} << 20;
  c.not_joined = {
      {"SenderGoneMidTransferFailsTheReceiver",
       "an RDMA WRITE may land whole before the sender goes; KilledPeerIsAnErrorNotAHang "
       "(ibverbs_channel_test) covers a peer's death"},
      {"ReceiverGoneMidTransferFailsTheSender", "as SenderGoneMidTransferFailsTheReceiver"},
      {"SenderLeavingRightAfterItsLastSendLosesNothing",
       "a send starts only once its receive is posted, so no message can wait for a "
       "receiver whose sender left"}};
  return c;
}

INSTANTIATE_TEST_SUITE_P(Ib, TransportConformanceTest, ::testing::Values(ib_case()), case_name);

}  // namespace
}  // namespace ciuic::transport::transport_test
