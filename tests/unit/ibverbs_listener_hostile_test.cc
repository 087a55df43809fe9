// The hostile-client suite (listener_hostile.h) against the ibverbs listener: its side
// channel is a TCP listener with the common handshake. It needs a real RDMA device
// (Soft-RoCE in tests/rdma-vm, which runs every ibverbs_*_test, or an adapter); without
// one every test skips, saying why.
#include "transports/ibverbs/ib_wire.h"
#include "unit/listener_hostile.h"

namespace ciuic::transport::transport_test {
namespace {

ListenerCase ib_case() {
  ListenerCase c;
  c.label = "ibverbs";
  c.transport = "ibverbs";
  c.config = {{"CIUIC_SOCKET_IFNAME", "lo"}};
  c.needs_device = true;
  c.dial = [](const ConnectHandle& handle) { return dial_socket_handle(ib::kHandle, handle); };
  c.peer_name = &local_address;
  return c;
}

INSTANTIATE_TEST_SUITE_P(Ib, ListenerHostileTest, ::testing::Values(ib_case()), listener_case_name);

}  // namespace
}  // namespace ciuic::transport::transport_test
