// The conformance suite (transport_conformance.h) for the transports that work on every
// host: tcp over loopback, with every byte moved on the caller's thread and with striped
// pieces moved by I/O threads; shm with large messages read by CMA (CIUIC_SHM_CMA=on fails
// the connection rather than fall back) and copied through the ring. ibverbs runs the same
// suite in ibverbs_conformance_test.cc.
#include <unistd.h>

#include "transports/common/handle_codec.h"
#include "unit/transport_conformance.h"

namespace ciuic::transport::transport_test {
namespace {

std::string loopback() { return "127.0.0.1"; }
std::string this_pid() { return "pid " + std::to_string(::getpid()); }

TransportCase tcp_case(const char* label, const char* threads) {
  TransportCase c;
  c.label = label;
  c.transport = "tcp";
  c.config = {
      {"CIUIC_SOCKET_IFNAME", "lo"}, {"CIUIC_TCP_THREADS", threads}, {"CIUIC_TCP_SOCKETS", "4"}};
  c.peer = &loopback;
  c.description = "(tcp, 4 sockets)";
  c.token_offset = common::kHandleHeaderBytes + net::SocketAddress::kPackedBytes;
  c.refused_peer = "127.0.0.1:";
  c.stream_count = 3000;
  c.stream_max_bytes = size_t{8} << 20;
  c.stream_large_bytes = size_t{8} << 20;
  c.partial_receive = true;
  c.sender_gone = {"by the peer during a 67108864-byte receive"};
  c.receiver_gone = {"connection to 127.0.0.1", "by the peer"};
  c.last_send_bytes = size_t{1} << 20;  // four (with I/O threads three) pieces: all fit the socket buffers
  return c;
}

TransportCase shm_case(const char* path) {
  TransportCase c;
  c.label = path;
  c.transport = "shm";
  c.config = {{"CIUIC_SHM_CMA", std::string(path) == "cma" ? "on" : "off"},
              {"CIUIC_SHM_EAGER_BYTES", "32768"}};
  c.peer = &this_pid;
  c.description = std::string(path) == "cma" ? "(shm, cma)" : "(shm, copy)";
  c.token_offset = common::kHandleHeaderBytes;
  c.refused_peer = "pid ";
  c.stream_count = 1000;
  c.sender_gone = {"lost during a 67108864-byte receive", "closed its end"};
  c.receiver_gone = {"lost during a 67108864-byte send"};
  c.last_send_bytes = 20000;  // below the eager size: done once in the ring
  c.closed_sender = {"closed its end"};
  c.idle_fds = 2;  // the doorbell and the socket (and the peer's pidfd)
  return c;
}

INSTANTIATE_TEST_SUITE_P(Tcp, TransportConformanceTest,
                         ::testing::Values(tcp_case("Inline", "0"), tcp_case("Threads3", "3")),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Shm, TransportConformanceTest,
                         ::testing::Values(shm_case("cma"), shm_case("copy")), case_name);

}  // namespace
}  // namespace ciuic::transport::transport_test
