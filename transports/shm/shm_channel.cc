// What both directions of a shm channel share: the peer watch (socket and pidfd), ABORT
// frames, doorbells and registration.
#include "transports/shm/shm_channel.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "transports/common/host_memory.h"

namespace ciuic::transport::shm {
namespace {

constexpr int64_t kWatchIntervalNs = 100'000;  // a spinning caller looks at the peer this often
// ...and reads the clock to know that only every this many idle calls: a clock read was a
// good part of an idle test() (the ibverbs channel paces its liveness check the same way).
constexpr uint32_t kWatchEveryCalls = 64;
constexpr char kTransport[] = "the shm transport";

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  if (pid <= 0) return -1;
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

}  // namespace

ShmChannelBase::ShmChannelBase(ChannelSetup setup, bool is_sender)
    : segment_(std::move(setup.segment)),
      socket_(std::move(setup.socket)),
      my_bell_(is_sender ? std::move(setup.bell_to_sender) : std::move(setup.bell_to_receiver)),
      peer_bell_(is_sender ? std::move(setup.bell_to_receiver) : std::move(setup.bell_to_sender)),
      pidfd_(open_pidfd(setup.peer_pid)),
      peer_pid_(setup.peer_pid),
      path_(setup.path),
      is_sender_(is_sender) {
  // Without a pidfd (kernel before 5.3, or a peer in another pid namespace) the socket's
  // end of stream is the only sign of death; a forked child holding the socket hides it.
  if (!pidfd_.valid())
    CIUIC_LOG_TRACE(log::kNet, "shm channel %s: no pidfd (%s); the socket alone watches the peer",
                    describe().c_str(), std::strerror(errno));
}

ShmChannelBase::~ShmChannelBase() {
  // An orderly close: the peer tells it from a death (state stays live) and from an abort.
  if (!abort_sent_) {
    auto& mine = is_sender_ ? ctl()->sender_state : ctl()->receiver_state;
    mine.store(kClosed, std::memory_order_seq_cst);
  }
}

std::string ShmChannelBase::describe() const {
  return "pid " + std::to_string(peer_pid_) + " (shm, " + path_name(path_) + ")";
}

uint32_t ShmChannelBase::peer_state() const {
  auto& theirs = is_sender_ ? ctl()->receiver_state : ctl()->sender_state;
  return theirs.load(std::memory_order_acquire);
}

void ShmChannelBase::wake_peer() {
  // Follows a seq_cst store of head / tail / done_seq: either the sleeper's look after
  // setting its flag sees that store, or this load sees the flag.
  auto& flag = is_sender_ ? ctl()->receiver_sleeping : ctl()->sender_sleeping;
  if (flag.load(std::memory_order_seq_cst) != 0 && flag.exchange(0, std::memory_order_seq_cst) != 0)
    ring_doorbell(peer_bell_.get());
}

void ShmChannelBase::announce_sleep() const {
  if (announced_) return;
  auto& flag = is_sender_ ? ctl()->sender_sleeping : ctl()->receiver_sleeping;
  flag.store(1, std::memory_order_seq_cst);
  announced_ = true;
}

void ShmChannelBase::end_sleep() {
  if (!announced_) return;
  auto& flag = is_sender_ ? ctl()->sender_sleeping : ctl()->receiver_sleeping;
  flag.store(0, std::memory_order_relaxed);
  drain_doorbell(my_bell_.get());
  announced_ = false;
}

Status ShmChannelBase::watch_peer(bool force) {
  if (!force && !slept_ && ++idle_watch_calls_ % kWatchEveryCalls != 0) return Status::Ok();
  const int64_t now = now_ns();
  if (!force && !slept_ && now - last_watch_ns_ < kWatchIntervalNs) return Status::Ok();
  slept_ = false;
  last_watch_ns_ = now;
  pollfd p[2] = {{socket_.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
  const nfds_t count = pidfd_.valid() && !peer_exited_ ? 2 : 1;
  if (peer_gone_ && count == 1) return Status::Ok();
  int ready = ::poll(p, count, 0);
  if (ready <= 0) return Status::Ok();
  if (count == 2 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    peer_exited_ = true;
    peer_gone_ = true;
  }
  if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) return Status::Ok();
  bool closed = false;
  CIUIC_RETURN_IF_ERROR(peer_abort_.read(socket_.get(), describe(), &closed));
  if (closed) peer_gone_ = true;
  return Status::Ok();
}

void ShmChannelBase::send_abort(std::string_view reason) {
  if (abort_sent_) return;
  abort_sent_ = true;
  uint8_t frame[kAbortHeaderBytes + kMaxAbortReason];
  size_t length = encode_abort(reason, frame);
  // Nothing else is ever written on this socket, so the frame fits its empty buffer.
  (void)::send(socket_.get(), frame, length, MSG_DONTWAIT | MSG_NOSIGNAL);
  // After the frame: a peer that sees the state finds the reason already in its socket.
  auto& mine = is_sender_ ? ctl()->sender_state : ctl()->receiver_state;
  mine.store(kAborted, std::memory_order_seq_cst);
  ring_doorbell(peer_bell_.get());
}

void ShmChannelBase::abort_channel(std::string_view reason) {
  abort_requested_.store(true, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_.ok())
    failed_ = aborted_error((is_sender_ ? "send channel to " : "receive channel from ") +
                            describe() + " aborted: " + std::string(reason));
  send_abort(reason);
}

std::string ShmChannelBase::gone_text() const {
  // An orderly close marks the segment; an abort sends its reason. A socket that ends with
  // neither, or a pidfd that fires, is a process that went away.
  if (!peer_exited_ && peer_state() == kClosed) return "the peer closed its end of the channel";
  return "the peer process exited or was killed";
}

Status ShmChannelBase::register_region(void*, size_t, int pointer_kind,
                                       std::unique_ptr<MemoryRegion>* out) {
  return common::register_host_memory(kTransport, pointer_kind, out);
}

}  // namespace ciuic::transport::shm
