// The transport interface: how bytes move between two processes.
//
// Shaped after the semantics NCCL's net plugin API fixed, so that the NCCL plugin is a
// thin adapter and every transport has two consumers (the collectives executor and NCCL):
//
//   Transport ── devices, properties, listen(), connect()
//   Listener  ── owns a ConnectHandle (<= 128 opaque bytes that travel out of band);
//                accept() is non-blocking and yields RecvChannels, one per connection
//   Connector ── progress() is non-blocking and yields one SendChannel
//   SendChannel / RecvChannel ── unidirectional; isend / irecv (grouped, tagged) / iflush
//                / test, all non-blocking; memory registration
//
// Ownership: the caller owns what these functions return (unique_ptr); a Request belongs
// to its channel and is valid until test() reports it done. A channel is driven by one
// thread at a time; register/deregister may be called from another thread.
//
// Matching: sends and receives on a channel match in posting order. A grouped receive
// posts n <= max_recvs buffers with tags; the next n sends land in the buffer whose tag
// equals the send's tag. A receive buffer may be larger than the send (test reports the
// real size); a send larger than its receive buffer is an error on the receiving side.
//
// Waiting: nothing here blocks. When no request can progress, the caller collects the
// poll descriptors of its channels (collect_poll_fds) and sleeps in poll() until one is
// ready or its deadline comes: no busy-spinning at idle.
#pragma once

#include <poll.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ciuic::transport {

// Pointer kinds, the same bit values as NCCL's NCCL_PTR_HOST/CUDA/DMABUF.
enum PointerKind : int { kHostMemory = 0x1, kCudaMemory = 0x2, kDmabufMemory = 0x4 };

constexpr size_t kHandleBytes = 128;   // NCCL_NET_HANDLE_MAXSIZE
constexpr int kMaxGroupedRecvs = 8;    // the most buffers one irecv may post
constexpr int kMaxRequests = 32;       // outstanding requests per channel (NCCL_NET_MAX_REQUESTS)

struct ConnectHandle {
  uint8_t bytes[kHandleBytes] = {};
};

struct DeviceProperties {
  std::string name;                 // "lo", "eth0", "mlx5_0"
  std::string pci_path;             // sysfs PCI path, "" when there is none (loopback)
  uint64_t guid = 0;                // same guid on two devices = the same physical port
  int pointer_support = kHostMemory;
  int speed_mbps = 0;               // link speed; 0 if unknown
  int port = 1;
  float latency_us = 0;             // 0 = unknown
  int max_comms = 65536;            // channels this device can hold
  int max_recvs = 1;                // buffers per grouped irecv (1..kMaxGroupedRecvs)
  int max_requests = kMaxRequests;  // outstanding requests per channel
  size_t max_message_bytes = size_t{1} << 40;
  bool registration_is_global = true;  // a registration works on every channel of the device
  bool force_flush = false;            // receives into GPU memory need iflush
};

// A registration: opaque to the caller, meaningful only to the transport that made it.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
};

// An in-flight operation. Owned by its channel; dead once test() reports done.
class Request {
 public:
  virtual ~Request() = default;
};

// What send and receive channels share: registration, failure, waiting.
class Channel {
 public:
  virtual ~Channel() = default;  // closes the connection; outstanding requests die with it

  // Registers [data, data+size) of the given PointerKind. Transports that need no
  // registration (TCP) return a trivial region; CUDA memory may be refused.
  virtual Status register_memory(void* data, size_t size, int pointer_kind,
                                 std::unique_ptr<MemoryRegion>* out) = 0;
  // dmabuf registration (GPU memory exported as a file descriptor); fd is borrowed.
  virtual Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                 std::unique_ptr<MemoryRegion>* out);

  // Marks the channel failed and tells the peer why, best effort and without waiting;
  // every pending and later request on either side fails with `reason` in its message.
  virtual void abort(std::string_view reason) = 0;

  // Descriptors that become ready when this channel may progress (appended to *fds).
  virtual void collect_poll_fds(std::vector<pollfd>* fds) const = 0;

  // "10.0.0.2:41234 (tcp, 4 sockets)" — for error messages.
  virtual std::string peer_description() const = 0;
};

class SendChannel : public Channel {
 public:
  // Posts a send of `size` bytes with `tag`. Ok with *request == nullptr means "cannot
  // start now (too many in flight), call again" — not an error.
  virtual Status isend(const void* data, size_t size, int tag, MemoryRegion* region,
                       Request** request) = 0;
  // Progresses the channel; *done = true once the data left (the buffer may be reused).
  // *size (may be null) gets the bytes sent.
  virtual Status test(Request* request, bool* done, size_t* size) = 0;
};

class RecvChannel : public Channel {
 public:
  // Posts a grouped receive of n (1..max_recvs) buffers. Ok with *request == nullptr
  // means "call again".
  virtual Status irecv(int n, void* const* data, const size_t* sizes, const int* tags,
                       MemoryRegion* const* regions, Request** request) = 0;
  // Makes received data visible to the GPU (GPUDirect); *request == nullptr means
  // nothing was needed. Host-memory transports keep this default.
  virtual Status iflush(int n, void* const* data, const size_t* sizes,
                        MemoryRegion* const* regions, Request** request);
  // *done = true when all n buffers are filled; sizes (n entries, may be null) get the
  // bytes each received.
  virtual Status test(Request* request, bool* done, size_t* sizes) = 0;
};

class Listener {
 public:
  virtual ~Listener() = default;
  // The bytes a connector needs; send them to the peer out of band.
  virtual const ConnectHandle& handle() const = 0;
  // Non-blocking: *out stays null until one more connection is fully established and
  // authenticated. A listener may accept any number of connections.
  virtual Status accept(std::unique_ptr<RecvChannel>* out) = 0;
  virtual void collect_poll_fds(std::vector<pollfd>* fds) const = 0;
};

class Connector {
 public:
  virtual ~Connector() = default;
  // Non-blocking: *out stays null until the connection is established.
  virtual Status progress(std::unique_ptr<SendChannel>* out) = 0;
  virtual void collect_poll_fds(std::vector<pollfd>* fds) const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  virtual int device_count() const = 0;
  virtual Status device_properties(int device, DeviceProperties* out) const = 0;
  virtual Status listen(int device, std::unique_ptr<Listener>* out) = 0;
  virtual Status connect(int device, const ConnectHandle& handle,
                         std::unique_ptr<Connector>* out) = 0;
};

// ---- registry: transports/registry.cc holds one line per transport ----

struct TransportOptions {
  int64_t handshake_timeout_ms = 30000;  // a connection must authenticate within this
};

using TransportFactory = Status (*)(const TransportOptions& options,
                                    std::unique_ptr<Transport>* out);

struct TransportEntry {
  const char* name;
  TransportFactory create;
  const char* description;
  // Reaches only processes on the same host (shm): never "auto"'s pick for the network;
  // the communicator uses it for same-host peers (CIUIC_LOCAL_TRANSPORT).
  bool same_host_only = false;
};

const std::vector<TransportEntry>& registered_transports();
// Creates the named transport; "auto" picks the best one that works here and says why.
Status create_transport(std::string_view name, const TransportOptions& options,
                        std::unique_ptr<Transport>* out, std::string* why = nullptr);

}  // namespace ciuic::transport
