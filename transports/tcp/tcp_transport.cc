#include "transports/transport.h"

namespace ciuic::transport {

Status create_tcp_transport(const TransportOptions&, std::unique_ptr<Transport>* out) {
  out->reset();
  return unsupported("the TCP transport is not built yet");
}

}  // namespace ciuic::transport
