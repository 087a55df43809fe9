// Helpers shared by the shm transport tests: the fixture (with the large-message path
// forced through CIUIC_SHM_CMA) and forked peers. Connecting, waiting and data patterns
// come from transport_test_helpers.h.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "support/scoped_config.h"
#include "transports/transport.h"
#include "unit/transport_test_helpers.h"

namespace ciuic::transport::shm_test {

using namespace transport_test;

constexpr size_t kEagerBytes = 32 * 1024;  // the default CIUIC_SHM_EAGER_BYTES

class ShmTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = create_transport("shm", TransportOptions{}, &transport_);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  std::unique_ptr<Transport> transport_;
};

// Every data-path test runs on both paths for large messages: "cma" (single copy with
// process_vm_readv; CIUIC_SHM_CMA=on fails the connection rather than fall back) and
// "copy" (pipelined through the ring).
class ShmPathTest : public ShmTransportTest, public ::testing::WithParamInterface<std::string> {
 protected:
  testing::ScopedConfig cma_{"CIUIC_SHM_CMA", GetParam() == "cma" ? "on" : "off"};
  testing::ScopedConfig eager_{"CIUIC_SHM_EAGER_BYTES", std::to_string(kEagerBytes)};
  std::string path_text() const { return "(shm, " + GetParam() + ")"; }
};

// Runs fn() in a forked child and returns its pid; the child exits with fn's result.
// Call only while this process has no other threads.
inline pid_t fork_child(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 100;
    code = fn();
    ::_exit(code);
  }
  return pid;
}

// The child's exit code, or 200 + signal number if a signal ended it.
inline int wait_child(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 200 + WTERMSIG(status);
  return -1;
}

// Blocking helpers for the pipes that carry handles and "ready" bytes between processes.
inline bool write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}
inline bool read_all(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace ciuic::transport::shm_test
