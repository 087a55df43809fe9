#include "transports/common/device_transport.h"

#include <string>

namespace ciuic::transport::common {

Status DeviceTransport::check_device(int device) const {
  const int count = device_count();
  if (device >= 0 && device < count) return Status::Ok();
  return invalid_argument(
      std::string(name()) + " transport has " +
      (count == 1 ? std::string("one device (0)") : std::to_string(count) + " device(s)") +
      ", not device " + std::to_string(device));
}

Status DeviceTransport::device_properties(int device, DeviceProperties* out) const {
  CIUIC_RETURN_IF_ERROR(check_device(device));
  *out = properties_of(device);
  return Status::Ok();
}

Status DeviceTransport::listen(int device, std::unique_ptr<Listener>* out) {
  CIUIC_RETURN_IF_ERROR(check_device(device));
  return listen_on(device, out);
}

Status DeviceTransport::connect(int device, const ConnectHandle& handle,
                                std::unique_ptr<Connector>* out) {
  CIUIC_RETURN_IF_ERROR(check_device(device));
  return connect_with(device, handle, out);
}

}  // namespace ciuic::transport::common
