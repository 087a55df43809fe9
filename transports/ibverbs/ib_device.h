// RDMA devices: discovery of active ports (CIUIC_IB_HCA), their properties, the GID of a
// RoCE port, and what every channel of a device shares (context, protection domain,
// registration cache). Also the transport's CIUIC_IB_* parameters.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "transports/ibverbs/ib_regcache.h"
#include "transports/ibverbs/verbs_api.h"
#include "transports/transport.h"

namespace ciuic::transport::ib {

// The most work requests one send's payload is cut into (each <= the port's max_msg_sz).
constexpr int kMaxWrsPerSend = 32;

#if CIUIC_HAVE_VERBS_H

// One opened adapter: shared by its ports' devices, their channels and regions.
struct Hca {
  const VerbsApi* api = nullptr;
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  std::string name;
  ibv_device_attr attr{};
  std::unique_ptr<RegistrationCache> cache;
  ~Hca();
};

// One active port: what the transport calls a device.
struct Device {
  std::shared_ptr<Hca> hca;
  int port = 1;
  ibv_port_attr port_attr{};
  int gid_index = 0;
  uint8_t gid[16] = {};
  std::string gid_why;
  DeviceProperties props;

  bool is_ethernet() const { return port_attr.link_layer == IBV_LINK_LAYER_ETHERNET; }
  std::string describe() const;  // "rxe0:1 (RoCE, GID index 1)"
};

// Opens every active port that CIUIC_IB_HCA allows. Fails with the reason when none is
// usable: no device, none active, none matching.
Status discover_devices(const VerbsApi* api, std::vector<std::shared_ptr<Device>>* out);

#endif

// Parameters (read where connections are made).
struct IbParams {
  int qps_per_conn = 1;
  int traffic_class = 0;
  int service_level = 0;
  int timeout = 20;
  int retry_count = 7;
  size_t bounce_bytes = 1 << 20;
};
IbParams configured_params();

}  // namespace ciuic::transport::ib
