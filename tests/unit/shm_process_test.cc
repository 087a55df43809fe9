// The shm transport between separate processes (fork): data in both directions on both
// large-message paths, a peer killed with SIGKILL on either side, nothing left behind
// in /dev/shm or in this process's mappings, and CMA refused where the kernel forbids it.
// Children create their own transport after fork() and report through their exit code.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <functional>
#include <set>
#include <string>

#include "unit/shm_test_helpers.h"

namespace ciuic::transport {
namespace {

using testing::ScopedConfig;
using namespace shm_test;

const size_t kSizes[] = {
    0, 1, 7, kEagerBytes - 1, kEagerBytes, kEagerBytes + 1, (1u << 20) + 3, size_t{64} << 20};

// Forks a child that runs prepare() (e.g. gives up its privileges), creates an shm
// listener, passes its handle back through a pipe into *handle and runs serve() on the
// listener; the child's exit code is serve's. The child's pid, or -1.
pid_t fork_listener(
    const std::function<int(Listener*)>& serve, ConnectHandle* handle,
    const std::function<bool()>& prepare = [] { return true; }) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return -1;
  pid_t child = fork_child([&] {
    if (!prepare()) return 89;
    std::unique_ptr<Transport> t;
    std::unique_ptr<Listener> listener;
    if (!create_transport("shm", TransportOptions{}, &t).ok() || !t->listen(0, &listener).ok())
      return 90;
    if (!write_all(pipe_fds[1], listener->handle().bytes, kHandleBytes)) return 91;
    return serve(listener.get());
  });
  ::close(pipe_fds[1]);
  const bool passed = child > 0 && read_all(pipe_fds[0], handle->bytes, kHandleBytes);
  ::close(pipe_fds[0]);
  return passed ? child : -1;
}

class ShmProcessTest : public ShmPathTest {
 protected:
  // Forks a child that listens, passes its handle back through a pipe and runs serve() on
  // the channel it accepts (its exit code is serve's); connects to it from this process
  // into *send. Under Yama's ptrace_scope=1 a child may not read its parent: "cma" is then
  // refused, saying so, and the test skips.
  void start_receiver(const std::function<int(RecvChannel*)>& serve,
                      std::unique_ptr<SendChannel>* send, pid_t* child) {
    ConnectHandle handle;
    *child = fork_listener(
        [&](Listener* listener) {
          std::unique_ptr<RecvChannel> recv;
          if (!accept_one(listener, &recv).ok()) return 92;
          return serve(recv.get());
        },
        &handle);
    ASSERT_GT(*child, 0);
    Status s = connect_to(transport_.get(), handle, send);
    if (!s.ok() && GetParam() == "cma" &&
        s.message().find("process_vm_readv") != std::string::npos) {
      ::kill(*child, SIGKILL);
      wait_child(*child);
      GTEST_SKIP() << "CMA from child to parent is forbidden here: " << s.message();
    }
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
};
INSTANTIATE_TEST_SUITE_P(Large, ShmProcessTest, ::testing::Values("cma", "copy"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

std::set<std::string> dev_shm_entries() {
  std::set<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) names.insert(e->d_name);
    ::closedir(d);
  }
  return names;
}

// Mappings of shm segments in this process.
int mapped_segments() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int count = 0;
  while (std::getline(maps, line)) count += line.find("memfd:ciuic-shm") != std::string::npos;
  return count;
}

// Child: connects to `handle` and sends every size in kSizes (patterned), then exits 0;
// a failure exits with 1 + the size's index.
int send_every_size(const ConnectHandle& handle) {
  std::unique_ptr<Transport> t;
  if (!create_transport("shm", TransportOptions{}, &t).ok()) return 90;
  std::unique_ptr<SendChannel> send;
  if (!connect_to(t.get(), handle, &send).ok()) return 91;
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    std::vector<uint8_t> out(kSizes[i]);
    fill(out.data(), out.size(), i);
    Request* r = nullptr;
    if (!send->isend(out.data(), out.size(), static_cast<int>(i), nullptr, &r).ok() || r == nullptr)
      return 1 + static_cast<int>(i);
    if (!wait_done(send.get(), r, static_cast<size_t*>(nullptr)).ok())
      return 1 + static_cast<int>(i);
  }
  return 0;
}

// Receives every size in kSizes and checks it; returns "" or what was wrong.
std::string receive_every_size(RecvChannel* recv) {
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    std::vector<uint8_t> in(kSizes[i] + 64, 0xee);
    void* data = in.data();
    size_t cap = in.size(), got = 0;
    int tag = static_cast<int>(i);
    Request* r = nullptr;
    Status s = recv->irecv(1, &data, &cap, &tag, nullptr, &r);
    if (s.ok()) s = wait_done(recv, r, &got);
    if (!s.ok()) return std::to_string(kSizes[i]) + " bytes: " + s.to_string();
    if (got != kSizes[i]) return std::to_string(kSizes[i]) + " bytes: got " + std::to_string(got);
    int64_t wrong = first_mismatch(in.data(), got, i);
    if (wrong >= 0)
      return std::to_string(kSizes[i]) + " bytes: differs at " + std::to_string(wrong);
    if (in[got] != 0xee) return std::to_string(kSizes[i]) + " bytes: written past the message";
  }
  return "";
}

TEST_P(ShmProcessTest, ChildSendsEverySizeIntact) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  const ConnectHandle handle = listener->handle();
  pid_t child = fork_child([&] { return send_every_size(handle); });
  ASSERT_GT(child, 0);
  std::unique_ptr<RecvChannel> recv;
  Status s = accept_one(listener.get(), &recv);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_NE(recv->peer_description().find("pid " + std::to_string(child) + " " + path_text()),
            std::string::npos)
      << recv->peer_description();
  EXPECT_EQ(receive_every_size(recv.get()), "");
  EXPECT_EQ(wait_child(child), 0);
}

// The other direction: the child receives, this process sends.
TEST_P(ShmProcessTest, ParentSendsEverySizeIntact) {
  std::unique_ptr<SendChannel> send;
  pid_t child = -1;
  start_receiver(
      [](RecvChannel* recv) {
        std::string wrong = receive_every_size(recv);
        if (!wrong.empty()) std::fprintf(stderr, "child: %s\n", wrong.c_str());
        return wrong.empty() ? 0 : 1;
      },
      &send, &child);
  if (IsSkipped() || HasFatalFailure()) return;
  Status s;
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    std::vector<uint8_t> out(kSizes[i]);
    fill(out.data(), out.size(), i);
    Request* r = nullptr;
    ASSERT_TRUE(send->isend(out.data(), out.size(), static_cast<int>(i), nullptr, &r).ok());
    s = wait_done(send.get(), r, static_cast<size_t*>(nullptr));
    ASSERT_TRUE(s.ok()) << kSizes[i] << " bytes: " << s.to_string();
  }
  EXPECT_EQ(wait_child(child), 0);
}

// A sender killed while this side waits: an error naming its pid, well before any
// deadline, and no trace of the segment afterwards.
TEST_P(ShmProcessTest, KilledSenderFailsTheReceiverAndLeavesNothing) {
  const std::set<std::string> before = dev_shm_entries();
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport_->listen(0, &listener).ok());
  const ConnectHandle handle = listener->handle();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  // The child starts a 64 MiB send (copy path: the first ring-full leaves; CMA: only the
  // header) and then stops progressing it, as a process stuck elsewhere would.
  pid_t child = fork_child([&] {
    std::unique_ptr<Transport> t;
    if (!create_transport("shm", TransportOptions{}, &t).ok()) return 90;
    std::unique_ptr<SendChannel> send;
    if (!connect_to(t.get(), handle, &send).ok()) return 91;
    std::vector<uint8_t> out(size_t{64} << 20, 1);
    Request* r = nullptr;
    if (!send->isend(out.data(), out.size(), 0, nullptr, &r).ok()) return 92;
    char byte = 'r';
    if (!write_all(ready[1], &byte, 1)) return 93;
    for (;;) ::pause();
  });
  ASSERT_GT(child, 0);
  ::close(ready[1]);
  std::unique_ptr<RecvChannel> recv;
  ASSERT_TRUE(accept_one(listener.get(), &recv).ok());
  char byte = 0;
  ASSERT_TRUE(read_all(ready[0], &byte, 1));
  ::close(ready[0]);
  EXPECT_GE(mapped_segments(), 1);
  // A receive that cannot complete while the child lives: CMA would read the whole
  // message at once, so ask for it and one more.
  std::vector<uint8_t> in(size_t{64} << 20);
  void* data = in.data();
  size_t cap = in.size();
  int tag = 0;
  Request *first = nullptr, *second = nullptr;
  ASSERT_TRUE(recv->irecv(1, &data, &cap, &tag, nullptr, &first).ok());
  ASSERT_TRUE(recv->irecv(1, &data, &cap, &tag, nullptr, &second).ok());
  bool done = false;
  ASSERT_TRUE(recv->test(first, &done, nullptr).ok());
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_child(child), 200 + SIGKILL);
  Status s = wait_done(recv.get(), first, static_cast<size_t*>(nullptr), 10000);
  if (s.ok()) s = wait_done(recv.get(), second, static_cast<size_t*>(nullptr), 10000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("pid " + std::to_string(child)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("exited or was killed"), std::string::npos) << s.message();
  recv.reset();
  listener.reset();
  EXPECT_EQ(mapped_segments(), 0) << "a segment is still mapped after its channel closed";
  EXPECT_EQ(dev_shm_entries(), before) << "something was left in /dev/shm";
}

TEST_P(ShmProcessTest, KilledReceiverFailsTheSender) {
  std::unique_ptr<SendChannel> send;
  pid_t child = -1;
  start_receiver(
      [](RecvChannel*) {
        for (;;) ::pause();  // never receives
        return 0;
      },
      &send, &child);
  if (IsSkipped() || HasFatalFailure()) return;
  Status s;
  std::vector<uint8_t> out(size_t{16} << 20);
  Request* r = nullptr;
  ASSERT_TRUE(send->isend(out.data(), out.size(), 0, nullptr, &r).ok());
  bool done = false;
  ASSERT_TRUE(send->test(r, &done, nullptr).ok());
  EXPECT_FALSE(done);
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_child(child), 200 + SIGKILL);
  s = wait_done(send.get(), r, static_cast<size_t*>(nullptr), 10000);
  EXPECT_EQ(s.code(), CIUIC_ERR_REMOTE) << s.to_string();
  EXPECT_NE(s.message().find("pid " + std::to_string(child)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("lost during a 16777216-byte send"), std::string::npos) << s.message();
  // Later sends fail at once.
  Request* next = nullptr;
  EXPECT_EQ(send->isend(out.data(), 1, 0, nullptr, &next).code(), CIUIC_ERR_REMOTE);
}

// A receiver that may not read the sender's memory (another user, no CAP_SYS_PTRACE):
// "auto" copies through the ring and says so in the channel; "on" is refused with the
// reason. Needs root to start the child as another user.
TEST_F(ShmTransportTest, CmaForbiddenFallsBackOrIsRefusedWithTheReason) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the receiver as another user";
  int finished[2];
  ASSERT_EQ(::pipe(finished), 0);
  ScopedConfig cma_in_child("CIUIC_SHM_CMA", "auto");
  ConnectHandle handle;
  pid_t child = fork_listener(
      [&](Listener* listener) {
        std::unique_ptr<RecvChannel> recv;
        if (!accept_one(listener, &recv).ok()) return 92;
        if (recv->peer_description().find("(shm, copy)") == std::string::npos) return 93;
        std::vector<uint8_t> in(size_t{3} << 20);
        void* data = in.data();
        size_t cap = in.size(), got = 0;
        int tag = 0;
        Request* r = nullptr;
        if (!recv->irecv(1, &data, &cap, &tag, nullptr, &r).ok()) return 94;
        if (!wait_done(recv.get(), r, &got).ok() || got != in.size()) return 95;
        if (first_mismatch(in.data(), got, 77) != -1) return 96;
        // Keep accepting so the refused attempt below gets its verdict, until the parent
        // closes its end of `finished`.
        std::unique_ptr<RecvChannel> none;
        Deadline until = Deadline::after_ms(kWaitMs);
        pollfd parent_done{finished[0], POLLIN, 0};
        while (!until.expired() && none == nullptr && ::poll(&parent_done, 1, 1) == 0)
          (void)listener->accept(&none);
        return none == nullptr ? 0 : 97;
      },
      &handle,
      [&] {
        ::close(finished[1]);
        return ::setgid(65534) == 0 && ::setuid(65534) == 0;  // nobody: no ptrace rights
      });
  ASSERT_GT(child, 0);
  ::close(finished[0]);
  {
    ScopedConfig cma("CIUIC_SHM_CMA", "auto");
    std::unique_ptr<SendChannel> send;
    Status s = connect_to(transport_.get(), handle, &send);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_NE(send->peer_description().find("(shm, copy)"), std::string::npos)
        << send->peer_description();
    std::vector<uint8_t> out(size_t{3} << 20);
    fill(out.data(), out.size(), 77);
    Request* r = nullptr;
    ASSERT_TRUE(send->isend(out.data(), out.size(), 0, nullptr, &r).ok());
    ASSERT_TRUE(wait_done(send.get(), r, static_cast<size_t*>(nullptr)).ok());
  }
  {
    ScopedConfig cma("CIUIC_SHM_CMA", "on");
    std::unique_ptr<SendChannel> send;
    Status s = connect_to(transport_.get(), handle, &send);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("CIUIC_SHM_CMA=on on the sender"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("process_vm_readv of pid " + std::to_string(::getpid())),
              std::string::npos)
        << s.message();
  }
  ::close(finished[1]);
  EXPECT_EQ(wait_child(child), 0);
}

}  // namespace
}  // namespace ciuic::transport
