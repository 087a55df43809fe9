// What every Transport does the same way: the device index is checked (with a message
// that says how many there are) before device_properties, listen and connect reach the
// transport's own code, and listeners and connectors get the handshake timeout.
#pragma once

#include <cstdint>
#include <memory>

#include "transports/transport.h"

namespace ciuic::transport::common {

class DeviceTransport : public Transport {
 public:
  Status device_properties(int device, DeviceProperties* out) const final;
  Status listen(int device, std::unique_ptr<Listener>* out) final;
  Status connect(int device, const ConnectHandle& handle, std::unique_ptr<Connector>* out) final;

 protected:
  explicit DeviceTransport(const TransportOptions& options) : options_(options) {}

  // The transport's own parts, called with a valid device index.
  virtual const DeviceProperties& properties_of(int device) const = 0;
  virtual Status listen_on(int device, std::unique_ptr<Listener>* out) = 0;
  virtual Status connect_with(int device, const ConnectHandle& handle,
                              std::unique_ptr<Connector>* out) = 0;

  int64_t handshake_timeout_ms() const { return options_.handshake_timeout_ms; }

 private:
  Status check_device(int device) const;

  TransportOptions options_;
};

}  // namespace ciuic::transport::common
