// The shared segment of one channel: a memfd (no name anywhere in the file system, freed
// by the kernel when the last process holding it goes, even when killed), sealed against
// resizing, mapped by both processes. It holds a control block and a single-producer,
// single-consumer byte ring:
//
//   offset 0      ControlBlock: one cache line per writer, so the two sides never write
//                 the same line (head: sender; tail, done_seq: receiver; each side's
//                 "going to sleep" flag; each side's state)
//   offset 4096   ring of ring_bytes (a power of two), addressed by free-running u64
//                 counters: bytes [tail, head) are the receiver's to read.
//
// Records in the ring start at 64-byte boundaries with a 64-byte RingHeader:
//   kRingData: the header, then `size` payload bytes, padded to 64 (eager messages, and
//              every message on a channel without CMA, streamed in chunks);
//   kRingCma:  the header alone; the receiver reads `size` bytes at `address` in the
//              sender with process_vm_readv and then publishes done_seq = seq + 1.
//
// Ordering: payload bytes are plain stores published by a release store of head and
// taken after an acquire load of it (and the same for tail the other way). A side that
// is about to sleep stores its flag, fences (seq_cst) and looks again; the other side
// publishes, fences (seq_cst) and rings the doorbell only if it sees the flag — so a
// wake-up is never lost, and the hot path makes no system call.
//
// Both ends in one process (threads, tests) share one mapping of the segment rather than
// mapping it twice, so a race detector sees the two sides touch the same addresses.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/net.h"
#include "base/status.h"

namespace ciuic::transport::shm {

constexpr size_t kLine = 64;
constexpr size_t kControlBytes = 4096;
constexpr uint64_t kMinRingBytes = 64 * 1024;
constexpr uint64_t kMaxRingBytes = uint64_t{1} << 30;
constexpr uint64_t kSegmentMagic = 0x31474553'4d485343ULL;  // "CSHMSEG1"

enum PeerState : uint32_t { kLive = 0, kClosed = 1, kAborted = 2 };

struct ControlBlock {
  // Written once by the creator before the segment is handed over.
  uint64_t magic;
  uint64_t ring_bytes;
  // Sender's line.
  alignas(kLine) std::atomic<uint64_t> head;
  // Receiver's line.
  alignas(kLine) std::atomic<uint64_t> tail;
  std::atomic<uint64_t> done_seq;  // messages the receiver has fully taken
  // "I am going to sleep": set by its owner, cleared by whoever rings the doorbell.
  alignas(kLine) std::atomic<uint32_t> receiver_sleeping;
  alignas(kLine) std::atomic<uint32_t> sender_sleeping;
  // PeerState of each side; rarely written.
  alignas(kLine) std::atomic<uint32_t> sender_state;
  std::atomic<uint32_t> receiver_state;
};
static_assert(sizeof(ControlBlock) <= kControlBytes);
static_assert(std::atomic<uint64_t>::is_always_lock_free &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free to work across processes");

enum class RecordType : uint32_t { kRingData = 1, kRingCma = 2 };
constexpr uint32_t kRingMarker = 0x52530000;  // upper half marks a record: catches corruption

struct RingHeader {
  uint32_t marker_type;  // kRingMarker | RecordType
  int32_t tag;
  uint64_t size;
  uint64_t seq;      // the message's number on this channel, from 0
  uint64_t address;  // kRingCma: the payload in the sender's address space
  uint8_t zero[32];
};
static_assert(sizeof(RingHeader) == kLine);

inline uint64_t round_up_line(uint64_t n) { return (n + kLine - 1) & ~uint64_t{kLine - 1}; }

class Segment {
 public:
  // A new sealed memfd of kControlBytes + ring_bytes, mapped and initialised; *fd is the
  // descriptor to pass to the peer.
  static Status create(uint64_t ring_bytes, std::shared_ptr<Segment>* out, net::Fd* fd);
  // Maps a segment received from the peer after checking its seals, size and header; a
  // segment this process has mapped already is shared.
  static Status attach(int fd, uint64_t expected_ring_bytes, std::shared_ptr<Segment>* out);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  ControlBlock* control() const { return reinterpret_cast<ControlBlock*>(base_); }
  uint64_t ring_bytes() const { return ring_bytes_; }
  // Copies into / out of the ring at free-running position `pos`, wrapping at its end.
  void write(uint64_t pos, const void* src, size_t n) const;
  void read(uint64_t pos, void* dst, size_t n) const;

 private:
  Segment(uint8_t* base, size_t length, uint64_t ring_bytes, uint64_t dev, uint64_t ino);
  uint8_t* base_;
  size_t length_;
  uint64_t ring_bytes_;
  uint64_t dev_;
  uint64_t ino_;
};

// A non-blocking, close-on-exec eventfd.
Status make_doorbell(net::Fd* out);
// Rings `fd` (eventfd write of 1); a full counter or a closed peer is no error.
void ring_doorbell(int fd);
// Empties `fd`'s counter.
void drain_doorbell(int fd);

}  // namespace ciuic::transport::shm
