// Pieces of run_local that are not about processes: the signal self-pipe and the
// "[rank] " line tagger.
#pragma once

#include <csignal>
#include <string>
#include <vector>

#include "base/net.h"
#include "base/status.h"

namespace ciuic::launch::internal {

// While alive, SIGINT, SIGTERM, SIGHUP and SIGCHLD are caught and written, one byte
// per signal, to a non-blocking pipe that the launch loop polls; the previous handlers
// come back on destruction. Only one may exist at a time in a process.
class SignalPipe {
 public:
  SignalPipe() = default;
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  Status install();
  int read_fd() const { return read_end_.get(); }
  // The signals that arrived since the last call, in order.
  std::vector<int> drain();

  // Restores default dispositions and an empty mask: called in a forked child before exec.
  static void reset_in_child();

 private:
  bool installed_ = false;
  net::Fd read_end_;
  net::Fd write_end_;
  struct sigaction previous_[4] = {};
};

// One child stream (stdout or stderr) read through a pipe and copied, line by line with
// a "[rank] " prefix, to the launcher's own stream.
class TaggedStream {
 public:
  TaggedStream(int rank, int read_fd, int dest_fd);

  bool open() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  // Reads what is available; at end of file flushes a partial last line and closes.
  void pump();
  // Gives up on the stream (its writer outlived the rank): flushes and closes.
  void close();

 private:
  void emit(const char* data, size_t size);  // one line, without its newline

  std::string prefix_;
  net::Fd fd_;
  int dest_fd_;
  std::string partial_;
};

// Writes all of data to fd, retrying on EINTR and EAGAIN; gives up silently on other
// errors (a closed terminal must not stop the ranks).
void write_all(int fd, const char* data, size_t size);

// "SIGSEGV", or "signal 42" for one without a name.
std::string signal_name(int signo);

}  // namespace ciuic::launch::internal
