// The ibverbs transport: one device per active RDMA port that CIUIC_IB_HCA allows. Data
// moves by RDMA WRITE over reliable-connected QPs (ib_channel.h); connection setup and
// failure notice go over a TCP socket bound to the interface CIUIC_SOCKET_IFNAME chooses.
#include "base/log.h"
#include "base/net.h"
#include "transports/common/device_transport.h"
#include "transports/ibverbs/ib_connect.h"
#include "transports/ibverbs/ib_device.h"
#include "transports/ibverbs/verbs_api.h"
#include "transports/transport.h"

namespace ciuic::transport {
namespace ib {
namespace {

#if CIUIC_HAVE_VERBS_H

class IbTransport final : public common::DeviceTransport {
 public:
  IbTransport(const TransportOptions& options, std::vector<std::shared_ptr<Device>> devices,
              net::SocketAddress local)
      : DeviceTransport(options), devices_(std::move(devices)), local_(local) {}

  const char* name() const override { return "ibverbs"; }
  int device_count() const override { return static_cast<int>(devices_.size()); }

 private:
  const DeviceProperties& properties_of(int device) const override {
    return devices_[static_cast<size_t>(device)]->props;
  }
  Status listen_on(int device, std::unique_ptr<Listener>* out) override {
    return IbListener::create(devices_[static_cast<size_t>(device)], local_,
                              handshake_timeout_ms(), out);
  }
  Status connect_with(int device, const ConnectHandle& handle,
                      std::unique_ptr<Connector>* out) override {
    return IbConnector::create(devices_[static_cast<size_t>(device)], handle,
                               handshake_timeout_ms(), out);
  }

  std::vector<std::shared_ptr<Device>> devices_;
  net::SocketAddress local_;
};

#endif

}  // namespace
}  // namespace ib

Status create_ibverbs_transport(const TransportOptions& options, std::unique_ptr<Transport>* out) {
  out->reset();
  const ib::VerbsApi* api = nullptr;
  CIUIC_RETURN_IF_ERROR(ib::verbs_api(&api));
#if CIUIC_HAVE_VERBS_H
  std::vector<std::shared_ptr<ib::Device>> devices;
  CIUIC_RETURN_IF_ERROR(ib::discover_devices(api, &devices));
  net::SocketAddress local;
  std::string why;
  CIUIC_RETURN_IF_ERROR(net::choose_local_address(&local, &why));
  std::string names;
  for (const auto& d : devices) names += (names.empty() ? "" : ", ") + d->describe();
  ib::IbParams params = ib::configured_params();
  CIUIC_LOG_INFO(log::kNet, "ibverbs transport: %s; setup over %s; %d QP(s) per channel", names.c_str(),
                 why.c_str(), params.qps_per_conn);
  *out = std::make_unique<ib::IbTransport>(options, std::move(devices), local);
  return Status::Ok();
#else
  return unsupported("built without <infiniband/verbs.h>");
#endif
}

}  // namespace ciuic::transport
