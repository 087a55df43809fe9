// The authenticated handshake that opens every ciuic connection, fed a hostile peer's
// bytes: as the server (a stranger's response) and as the client (a stranger pretending
// to be the server). It must fail cleanly or, without the key, never succeed.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/handshake.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ciuic::Handshake;
  if (size == 0 || size > 60000) return 0;
  const bool as_server = data[0] & 1;
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  // The stranger's whole conversation is queued up front, then its side closes for writing.
  size_t written = 0;
  while (written < size - 1) {
    ssize_t n = ::send(fds[1], data + 1 + written, size - 1 - written, MSG_NOSIGNAL);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  ::shutdown(fds[1], SHUT_WR);
  const ciuic::Key128 key = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  Handshake handshake(fds[0], as_server ? Handshake::Role::kServer : Handshake::Role::kClient, 0x43495543, 1,
                      key, std::vector<uint8_t>{'f', 'u', 'z', 'z'}, ciuic::Deadline::after_ms(1000), "fuzz peer");
  char sink[4096];
  for (int step = 0; step < 64; ++step) {
    bool done = false;
    ciuic::Status s = handshake.progress(&done);
    if (!s.ok()) break;
    // Without the key no MAC can be right: success here would be a forgery.
    if (done) __builtin_trap();
    if (handshake.awaiting_decision()) __builtin_trap();
    while (::recv(fds[1], sink, sizeof(sink), 0) > 0) {
    }
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return 0;
}
