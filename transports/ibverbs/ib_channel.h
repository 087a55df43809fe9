// ibverbs channels. The data path (NCCL-IB style, details in README.md):
//   irecv  writes the receive's FIFO entries {addr, rkey, size, tag, seq} into the sender's
//          FIFO slot with an RDMA WRITE WITH IMM (the IMM wakes the sender's completion
//          channel: nobody spins at idle);
//   isend  waits (returns no request) until its group's entries are there, matches its tag,
//          RDMA WRITEs the payload (striped over the QPs when large) and, after the group's
//          last send, one WRITE WITH IMM per QP — on QP 0 carrying the group's sizes (a
//          group of one buffer: the payload's own WRITE WITH IMM, the size in the IMM);
//   the receive is complete once every QP delivered its IMM for that sequence.
// The TCP socket of the handshake stays open beside the QPs: its end or an ABORT frame
// tells one side that the other died or gave up even when no RDMA traffic flows.
#pragma once

#include <array>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/net.h"
#include "transports/common/channel.h"
#include "transports/ibverbs/ib_endpoint.h"
#include "transports/ibverbs/ib_fifo.h"
#include "transports/transport.h"

namespace ciuic::transport::ib {

#if CIUIC_HAVE_VERBS_H

struct ChannelTestAccess;  // ib_testing.cc

// What register_memory returns: a reference to a cached registration, or (dmabuf) its own.
class IbRegion final : public MemoryRegion {
 public:
  IbRegion(std::shared_ptr<Hca> hca, RegistrationCache::Entry* entry, ibv_mr* own, int kind);
  ~IbRegion() override;
  bool contains(const void* data, size_t size) const;
  uint32_t lkey() const { return lkey_; }
  uint32_t rkey() const { return rkey_; }
  int kind() const { return kind_; }

 private:
  std::shared_ptr<Hca> hca_;
  RegistrationCache::Entry* entry_;
  ibv_mr* own_;
  uintptr_t start_;
  size_t length_;
  uint32_t lkey_;
  uint32_t rkey_;
  int kind_;
};

// A registered staging buffer for unregistered (region == nullptr) messages.
struct Bounce {
  void* data = nullptr;
  ibv_mr* mr = nullptr;
};

// Where one buffer's bytes go from or to on the wire.
struct BufferPlacement {
  uint64_t addr = 0;
  uint32_t key = 0;                              // lkey (send) or rkey (receive)
  Bounce* bounce = nullptr;                      // staged: copy through this
  RegistrationCache::Entry* transient = nullptr; // registered for this request only
};

// What both directions share: the endpoint, the side socket, failure and abort.
class IbChannelCore {
 public:
  IbChannelCore(std::unique_ptr<Endpoint> endpoint, net::Fd side, std::string peer_address,
                const char* role);
  ~IbChannelCore();
  friend struct ChannelTestAccess;

 protected:
  // Takes the channel's mutex: registration may come from another thread.
  Status register_region(void* data, size_t size, int kind, std::unique_ptr<MemoryRegion>* out);
  Status register_dmabuf_region(void* data, size_t size, uint64_t offset, int fd,
                                std::unique_ptr<MemoryRegion>* out);
  // Drains completion-channel events, re-arms the CQ, hands every completion to
  // on_completion, reads the side socket. Sets failed_ on any error.
  Status progress_core();
  virtual Status on_completion(const ibv_wc& wc) = 0;
  virtual bool has_unfinished() const = 0;
  void fail(Status s);  // records the first failure; QPs to error so nothing more moves
  void abort_core(std::string_view reason, const char* what);
  void collect_core(std::vector<pollfd>* fds) const;
  const std::string& describe() const { return description_; }
  // Destroys QPs and CQ (derived destructors call it before releasing request buffers).
  void close_endpoint();
  Status post_send(int qp, ibv_send_wr* wr, int count = 1);  // a chain of `count`
  // Finds a place for [data, data+size): inline, region, bounce or transient registration.
  Status place(const void* data, size_t size, MemoryRegion* region, bool remote,
               BufferPlacement* out);
  void release(BufferPlacement* p);
  Status peer_closed_error() const;

  std::unique_ptr<Endpoint> ep_;
  net::Fd side_;
  std::string peer_address_;
  const char* role_;  // "sender" / "receiver": what the peer is
  std::shared_ptr<Device> device_;
  std::string description_;
  mutable std::mutex mutex_;
  Status failed_;
  bool armed_ = false;
  bool aborted_ = false;
  bool peer_closed_ = false;
  int64_t peer_closed_ns_ = 0;
  int sq_used_[kMaxQps] = {};
  size_t bounce_bytes_;
  std::vector<std::unique_ptr<Bounce>> bounce_all_;
  std::vector<Bounce*> bounce_free_;
  // The peer's side frame as it arrives.
  uint8_t side_header_[kSideHeaderBytes] = {};
  size_t side_header_got_ = 0;
  char side_reason_[kMaxAbortReason] = {};
  size_t side_reason_got_ = 0;
  uint32_t side_reason_size_ = 0;
  bool side_in_reason_ = false;

 private:
  Status read_side();
  Status poll_cq(int* handled);
  std::string describe_endpoint() const;
  Status get_bounce(Bounce** out);
  int64_t last_check_ns_ = 0;
  unsigned idle_polls_ = 0;  // the clock is read every few idle polls only (a syscall in some VMs)
  mutable bool woke_from_poll_ = false;  // set by collect_poll_fds (under mutex_)
};

struct IbSendRequest final : Request {
  bool in_use = false;
  bool reported = false;
  int pending_wrs = 0;
  size_t size = 0;
  BufferPlacement placement;
};

class IbSendChannel final : public common::ChannelOver<SendChannel, IbChannelCore> {
 public:
  IbSendChannel(std::unique_ptr<Endpoint> endpoint, net::Fd side, std::string peer_address);
  ~IbSendChannel() override;

  Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                         std::unique_ptr<MemoryRegion>* out) override;
  void abort(std::string_view reason) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;
  Status isend(const void* data, size_t size, int tag, MemoryRegion* region,
               Request** request) override;
  Status test(Request* request, bool* done, size_t* size) override;

 private:
  friend struct ChannelTestAccess;
  Status on_completion(const ibv_wc& wc) override;
  bool has_unfinished() const override;
  Status refuse_send(Status why);  // fails the channel here and tells the receiver why

  SendFifo fifo_;
  std::array<IbSendRequest, kMaxRequests> requests_;
  // One send's work requests per QP, chained for a single ibv_post_send.
  std::array<std::array<ibv_send_wr, kMaxWrsPerSend + 2>, kMaxQps> chain_wrs_{};
  std::array<std::array<ibv_sge, kMaxWrsPerSend + 2>, kMaxQps> chain_sges_{};
};

struct IbRecvRequest final : Request {
  bool in_use = false;
  bool done = false;
  uint64_t seq = 0;
  int n = 0;
  void* data[kMaxGroupedRecvs] = {};
  size_t capacity[kMaxGroupedRecvs] = {};
  size_t received[kMaxGroupedRecvs] = {};
  BufferPlacement placement[kMaxGroupedRecvs];
};

// A flush: one RDMA READ through the channel's loopback QP (GPUDirect).
struct IbFlushRequest final : Request {
  bool in_use = false;
  bool done = false;
};

class IbRecvChannel final : public common::ChannelOver<RecvChannel, IbChannelCore> {
 public:
  IbRecvChannel(std::unique_ptr<Endpoint> endpoint, net::Fd side, std::string peer_address);
  ~IbRecvChannel() override;

  Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                         std::unique_ptr<MemoryRegion>* out) override;
  void abort(std::string_view reason) override;
  void collect_poll_fds(std::vector<pollfd>* fds) const override;
  Status irecv(int n, void* const* data, const size_t* sizes, const int* tags,
               MemoryRegion* const* regions, Request** request) override;
  Status iflush(int n, void* const* data, const size_t* sizes, MemoryRegion* const* regions,
                Request** request) override;
  Status test(Request* request, bool* done, size_t* sizes) override;

 private:
  friend struct ChannelTestAccess;
  Status on_completion(const ibv_wc& wc) override;
  bool has_unfinished() const override;
  Status finish_ready();  // completes receives whose IMMs all arrived, in order
  Status flush_progress();
  Status test_flush(IbFlushRequest* r, bool* done);

  ImmCounters imms_;
  uint64_t posted_seq_ = 0;     // next receive's sequence
  uint64_t completed_seq_ = 0;  // first receive not yet complete
  std::array<IbRecvRequest, kMaxRequests> requests_;
  IbRecvRequest* by_slot_[kFifoSlots] = {};
  // Per slot: the closing IMM carried the (single) size, and which (ib_fifo.h).
  bool size_in_imm_[kFifoSlots] = {};
  uint64_t imm_size_[kFifoSlots] = {};
  // Created on the first flush: a QP connected to itself, with its own CQ.
  std::unique_ptr<Endpoint> flush_ep_;
  std::array<IbFlushRequest, kMaxRequests> flushes_;
};

#endif

}  // namespace ciuic::transport::ib
