// The hostile-client suite (listener_hostile.h) against the tcp and shm listeners.
// ibverbs: ibverbs_listener_hostile_test.cc.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "transports/shm/shm_wire.h"
#include "transports/tcp/tcp_wire.h"
#include "unit/listener_hostile.h"

namespace ciuic::transport::transport_test {
namespace {

ListenerCase tcp_case() {
  ListenerCase c;
  c.label = "tcp";
  c.transport = "tcp";
  c.config = {{"CIUIC_SOCKET_IFNAME", "lo"}};
  c.dial = [](const ConnectHandle& handle) { return dial_socket_handle(tcp::kHandle, handle); };
  c.peer_name = &local_address;
  return c;
}

// A connection to the listener's abstract Unix socket.
net::Fd dial_shm(const ConnectHandle& handle) {
  shm::HandleContents contents;
  if (!shm::decode_handle(handle, &contents).ok()) return net::Fd();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, contents.name.data(), contents.name.size());
  const auto length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + contents.name.size());
  net::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.valid() && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0)
    fd.reset();
  return fd;
}

ListenerCase shm_case() {
  ListenerCase c;
  c.label = "shm";
  c.transport = "shm";
  c.dial = &dial_shm;
  // The shm listener names a client by the pid SO_PEERCRED reports: this process.
  c.peer_name = [](int) { return "pid " + std::to_string(::getpid()); };
  return c;
}

INSTANTIATE_TEST_SUITE_P(Listeners, ListenerHostileTest, ::testing::Values(tcp_case(), shm_case()),
                         listener_case_name);

}  // namespace
}  // namespace ciuic::transport::transport_test
