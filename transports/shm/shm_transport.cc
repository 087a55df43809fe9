// The shared-memory transport: one device ("shm") that reaches processes on this host.
// Channels are set up over abstract Unix sockets (shm_connect.h) and move data through a
// shared ring, large messages by single-copy CMA where the kernel allows it
// (shm_channel.h). Registered with same_host_only: the communicator uses it for peers on
// its own host, and "auto" never takes it as the network transport.
#include <cinttypes>

#include "base/config.h"
#include "base/log.h"
#include "transports/common/device_transport.h"
#include "transports/shm/shm_channel.h"
#include "transports/shm/shm_connect.h"
#include "transports/transport.h"

namespace ciuic::transport {
namespace shm {
namespace {

const config::IntParam kRingBytes{"CIUIC_SHM_RING_BYTES", 1024 * 1024,
                                  "shm transport: bytes of each channel's shared ring, a power of "
                                  "two in 64K..1G (set by the sender)"};
const config::IntParam kEagerBytes{
    "CIUIC_SHM_EAGER_BYTES", 32 * 1024,
    "shm transport: messages up to this size are copied through the ring; larger ones are read by "
    "the receiver with CMA where it works"};
const config::StringParam kCma{"CIUIC_SHM_CMA", "auto",
                               "shm transport: single-copy reads with process_vm_readv: auto "
                               "(tested per channel), on (required), off"};

}  // namespace

uint64_t configured_ring_bytes() {
  int64_t v = kRingBytes.get();
  uint64_t ring = kMinRingBytes;
  while (ring < kMaxRingBytes && static_cast<int64_t>(ring) < v) ring <<= 1;
  if (static_cast<int64_t>(ring) != v)
    CIUIC_LOG_WARN(log::kNet,
                   "CIUIC_SHM_RING_BYTES=%" PRId64
                   " is not a power of two in 64K..1G; using %" PRIu64,
                   v, ring);
  return ring;
}

uint64_t configured_eager_bytes() {
  int64_t v = kEagerBytes.get();
  if (v < 0) {
    CIUIC_LOG_WARN(log::kNet, "CIUIC_SHM_EAGER_BYTES=%" PRId64 " is negative; using 0", v);
    return 0;
  }
  return static_cast<uint64_t>(v);
}

CmaSetting configured_cma() {
  std::string v = kCma.get();
  if (v == "auto") return CmaSetting::kAuto;
  if (v == "on" || v == "1" || v == "yes" || v == "true") return CmaSetting::kOn;
  if (v == "off" || v == "0" || v == "no" || v == "false") return CmaSetting::kOff;
  CIUIC_LOG_WARN(log::kNet, "CIUIC_SHM_CMA=%s is not auto, on or off; using auto", v.c_str());
  return CmaSetting::kAuto;
}

namespace {

class ShmTransport final : public common::DeviceTransport {
 public:
  explicit ShmTransport(const TransportOptions& options) : DeviceTransport(options) {
    props_.name = "shm";
    props_.pointer_support = kHostMemory;
    // A memory copy, not a link: about what one core copies (the ring path copies twice,
    // CMA once), and the latency of a cache line crossing cores.
    props_.speed_mbps = 80000;
    props_.latency_us = 0.5f;
    props_.max_recvs = kMaxGroupedRecvs;
    props_.max_requests = kMaxRequests;
    props_.registration_is_global = true;
  }

  const char* name() const override { return "shm"; }
  int device_count() const override { return 1; }

 private:
  const DeviceProperties& properties_of(int) const override { return props_; }
  Status listen_on(int, std::unique_ptr<Listener>* out) override {
    return ShmListener::create(handshake_timeout_ms(), out);
  }
  Status connect_with(int, const ConnectHandle& handle, std::unique_ptr<Connector>* out) override {
    return ShmConnector::create(handle, handshake_timeout_ms(), out);
  }

  DeviceProperties props_;
};

}  // namespace
}  // namespace shm

Status create_shm_transport(const TransportOptions& options, std::unique_ptr<Transport>* out) {
  out->reset();
  CIUIC_LOG_INFO(log::kNet,
                 "shm transport: %" PRIu64 "-byte rings, eager up to %" PRIu64 " bytes, CMA %s",
                 shm::configured_ring_bytes(), shm::configured_eager_bytes(),
                 shm::cma_setting_name(shm::configured_cma()));
  *out = std::make_unique<shm::ShmTransport>(options);
  return Status::Ok();
}

}  // namespace ciuic::transport
