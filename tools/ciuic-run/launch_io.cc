#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "launch_internal.h"

namespace ciuic::launch::internal {
namespace {

constexpr int kCaughtSignals[4] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};

// The handler can only reach globals; one SignalPipe at a time owns this.
std::atomic<int> g_signal_write_fd{-1};

void on_signal(int signo) {
  int saved_errno = errno;
  int fd = g_signal_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    unsigned char byte = static_cast<unsigned char>(signo);
    // A full pipe drops the byte; SIGCHLD is re-checked by polling anyway.
    [[maybe_unused]] ssize_t n = ::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

// A line longer than this is cut and emitted in pieces, so a rank printing without
// newlines cannot grow the launcher's memory without bound.
constexpr size_t kMaxLine = 64 * 1024;

}  // namespace

Status SignalPipe::install() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("launcher signal pipe", errno);
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
  int expected = -1;
  if (!g_signal_write_fd.compare_exchange_strong(expected, write_end_.get())) {
    return invalid_argument(
        "another local launch is already running in this process; run them one after another");
  }
  for (int i = 0; i < 4; ++i) {
    struct sigaction action = {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART | (kCaughtSignals[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
    ::sigaction(kCaughtSignals[i], &action, &previous_[i]);
  }
  installed_ = true;
  return Status::Ok();
}

SignalPipe::~SignalPipe() {
  if (!installed_) return;
  for (int i = 0; i < 4; ++i) ::sigaction(kCaughtSignals[i], &previous_[i], nullptr);
  g_signal_write_fd.store(-1);
}

std::vector<int> SignalPipe::drain() {
  std::vector<int> signals;
  unsigned char buffer[64];
  for (;;) {
    ssize_t n = ::read(read_end_.get(), buffer, sizeof(buffer));
    if (n > 0) {
      for (ssize_t i = 0; i < n; ++i) signals.push_back(buffer[i]);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EAGAIN: nothing more
  }
  return signals;
}

void SignalPipe::reset_in_child() {
  struct sigaction action = {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  for (int signo : kCaughtSignals) ::sigaction(signo, &action, nullptr);
  ::sigaction(SIGPIPE, &action, nullptr);
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
}

TaggedStream::TaggedStream(int rank, int read_fd, int dest_fd)
    : prefix_("[" + std::to_string(rank) + "] "), fd_(read_fd), dest_fd_(dest_fd) {}

void TaggedStream::pump() {
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {  // end of file, or an error that ends the stream the same way
      close();
      return;
    }
    const char* start = buffer;
    const char* end = buffer + n;
    while (start < end) {
      const char* newline = static_cast<const char*>(std::memchr(start, '\n', end - start));
      if (newline == nullptr) {
        partial_.append(start, end);
        if (partial_.size() >= kMaxLine) {
          emit(partial_.data(), partial_.size());
          partial_.clear();
        }
        break;
      }
      if (partial_.empty()) {
        emit(start, newline - start);
      } else {
        partial_.append(start, newline);
        emit(partial_.data(), partial_.size());
        partial_.clear();
      }
      start = newline + 1;
    }
  }
}

void TaggedStream::close() {
  if (!partial_.empty()) {
    emit(partial_.data(), partial_.size());
    partial_.clear();
  }
  fd_.reset();
}

void TaggedStream::emit(const char* data, size_t size) {
  // One write per line so that lines of different ranks never interleave.
  std::string line;
  line.reserve(prefix_.size() + size + 1);
  line.append(prefix_).append(data, size).push_back('\n');
  write_all(dest_fd_, line.data(), line.size());
}

void write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p = {fd, POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) return;  // a stuck reader loses output, not the job
      continue;
    }
    return;
  }
}

std::string signal_name(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  if (abbrev == nullptr) return "signal " + std::to_string(signo);
  return std::string("SIG") + abbrev;
}

}  // namespace ciuic::launch::internal
