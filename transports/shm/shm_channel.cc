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

namespace ciuic::transport::shm {
namespace {

constexpr int64_t kWatchIntervalNs = 100'000;  // a spinning caller looks at the peer this often

class HostRegion final : public MemoryRegion {};

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

Status register_host_memory(int pointer_kind, std::unique_ptr<MemoryRegion>* out) {
  if (pointer_kind != kHostMemory)
    return unsupported("the shm transport moves host memory only (pointer kind " +
                       std::to_string(pointer_kind) + "); stage GPU buffers through host memory");
  *out = std::make_unique<HostRegion>();  // shared memory and CMA need no registration
  return Status::Ok();
}

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
  while (!peer_reason_complete_) {
    uint8_t* target;
    size_t want;
    if (abort_header_got_ < kAbortHeaderBytes) {
      target = abort_header_ + abort_header_got_;
      want = kAbortHeaderBytes - abort_header_got_;
    } else {
      target = reinterpret_cast<uint8_t*>(peer_reason_) + peer_reason_got_;
      want = peer_reason_size_ - peer_reason_got_;
    }
    ssize_t n = ::recv(socket_.get(), target, want, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
      peer_gone_ = true;
      break;
    }
    if (n < 0) return errno_error("recv from the shm channel socket of " + describe(), errno);
    if (abort_header_got_ < kAbortHeaderBytes) {
      abort_header_got_ += static_cast<size_t>(n);
      if (abort_header_got_ < kAbortHeaderBytes) continue;
      Status s = decode_abort_header(abort_header_, &peer_reason_size_);
      if (!s.ok()) return s.prefix("from " + describe());
      if (peer_reason_size_ == 0) peer_reason_complete_ = true;
    } else {
      peer_reason_got_ += static_cast<size_t>(n);
      if (peer_reason_got_ == peer_reason_size_) peer_reason_complete_ = true;
    }
  }
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

std::string ShmChannelBase::gone_text() const {
  // An orderly close marks the segment; an abort sends its reason. A socket that ends with
  // neither, or a pidfd that fires, is a process that went away.
  if (!peer_exited_ && peer_state() == kClosed) return "the peer closed its end of the channel";
  return "the peer process exited or was killed";
}

// ---- registration: shared memory and CMA need none, so regions are trivial ----

Status ShmSendChannel::register_memory(void*, size_t, int pointer_kind,
                                       std::unique_ptr<MemoryRegion>* out) {
  return register_host_memory(pointer_kind, out);
}

Status ShmRecvChannel::register_memory(void*, size_t, int pointer_kind,
                                       std::unique_ptr<MemoryRegion>* out) {
  return register_host_memory(pointer_kind, out);
}

}  // namespace ciuic::transport::shm
