#include "transports/shm/shm_segment.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <utility>

namespace ciuic::transport::shm {
namespace {

// The segments this process has mapped, by file identity, so that both ends of a channel
// inside one process use one mapping.
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::pair<uint64_t, uint64_t>, std::weak_ptr<Segment>>& registry() {
  static auto* r = new std::map<std::pair<uint64_t, uint64_t>, std::weak_ptr<Segment>>();
  return *r;
}

constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

Segment::Segment(uint8_t* base, size_t length, uint64_t ring_bytes, uint64_t dev, uint64_t ino)
    : base_(base), length_(length), ring_bytes_(ring_bytes), dev_(dev), ino_(ino) {}

Segment::~Segment() {
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find({dev_, ino_});
    if (it != registry().end() && it->second.expired()) registry().erase(it);
  }
  ::munmap(base_, length_);
}

Status Segment::create(uint64_t ring_bytes, std::shared_ptr<Segment>* out, net::Fd* fd) {
  if (!is_power_of_two(ring_bytes) || ring_bytes < kMinRingBytes || ring_bytes > kMaxRingBytes)
    return invalid_argument("shm ring of " + std::to_string(ring_bytes) +
                            " bytes: must be a power of two in 64K..1G");
  net::Fd f(::memfd_create("ciuic-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!f.valid())
    return errno_error("memfd_create (the shm transport needs Linux 3.17 or later)", errno);
  const size_t length = kControlBytes + ring_bytes;
  if (::ftruncate(f.get(), static_cast<off_t>(length)) != 0)
    return errno_error("ftruncate of a " + std::to_string(length) + "-byte shm segment", errno);
  // Sealed: neither side can shrink the file under the other's mapping (SIGBUS).
  if (::fcntl(f.get(), F_ADD_SEALS, kSeals) != 0)
    return errno_error("sealing the shm segment", errno);
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, f.get(), 0);
  if (p == MAP_FAILED)
    return errno_error("mmap of a " + std::to_string(length) + "-byte shm segment", errno);
  struct stat st {};
  if (::fstat(f.get(), &st) != 0) {
    int err = errno;
    ::munmap(p, length);
    return errno_error("fstat of the shm segment", err);
  }
  auto* c = new (p) ControlBlock();
  c->magic = kSegmentMagic;
  c->ring_bytes = ring_bytes;
  std::shared_ptr<Segment> seg(new Segment(static_cast<uint8_t*>(p), length, ring_bytes,
                                           static_cast<uint64_t>(st.st_dev),
                                           static_cast<uint64_t>(st.st_ino)));
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry()[{seg->dev_, seg->ino_}] = seg;
  }
  *out = std::move(seg);
  *fd = std::move(f);
  return Status::Ok();
}

Status Segment::attach(int fd, uint64_t expected_ring_bytes, std::shared_ptr<Segment>* out) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat of the peer's shm segment", errno);
  const size_t length = kControlBytes + expected_ring_bytes;
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != length)
    return invalid_argument("the peer's shm segment is " + std::to_string(st.st_size) +
                            " bytes, expected " + std::to_string(length));
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & kSeals) != kSeals)
    return invalid_argument("the peer's shm segment is not sealed against resizing");
  const std::pair<uint64_t, uint64_t> key{static_cast<uint64_t>(st.st_dev),
                                          static_cast<uint64_t>(st.st_ino)};
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find(key);
    if (it != registry().end()) {
      if (auto seg = it->second.lock()) {
        *out = std::move(seg);
        return Status::Ok();
      }
    }
  }
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap of the peer's shm segment", errno);
  const auto* c = static_cast<const ControlBlock*>(p);
  if (c->magic != kSegmentMagic || c->ring_bytes != expected_ring_bytes) {
    ::munmap(p, length);
    return invalid_argument("the peer's shm segment has a bad header");
  }
  std::shared_ptr<Segment> seg(
      new Segment(static_cast<uint8_t*>(p), length, expected_ring_bytes, key.first, key.second));
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry()[key] = seg;
  }
  *out = std::move(seg);
  return Status::Ok();
}

void Segment::write(uint64_t pos, const void* src, size_t n) const {
  uint8_t* ring = base_ + kControlBytes;
  const uint64_t at = pos & (ring_bytes_ - 1);
  const size_t first = static_cast<size_t>(std::min<uint64_t>(n, ring_bytes_ - at));
  std::memcpy(ring + at, src, first);
  if (first < n) std::memcpy(ring, static_cast<const uint8_t*>(src) + first, n - first);
}

void Segment::read(uint64_t pos, void* dst, size_t n) const {
  const uint8_t* ring = base_ + kControlBytes;
  const uint64_t at = pos & (ring_bytes_ - 1);
  const size_t first = static_cast<size_t>(std::min<uint64_t>(n, ring_bytes_ - at));
  std::memcpy(dst, ring + at, first);
  if (first < n) std::memcpy(static_cast<uint8_t*>(dst) + first, ring, n - first);
}

Status make_doorbell(net::Fd* out) {
  net::Fd f(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!f.valid()) return errno_error("eventfd", errno);
  *out = std::move(f);
  return Status::Ok();
}

void ring_doorbell(int fd) {
  uint64_t one = 1;
  for (;;) {
    ssize_t n = ::write(fd, &one, sizeof(one));
    if (n < 0 && errno == EINTR) continue;
    return;  // EAGAIN: the counter is full, the sleeper wakes anyway
  }
}

void drain_doorbell(int fd) {
  uint64_t count = 0;
  for (;;) {
    ssize_t n = ::read(fd, &count, sizeof(count));
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

}  // namespace ciuic::transport::shm
