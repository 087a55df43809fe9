// Registration for transports that move host memory only and need no registration (tcp:
// sockets; shm: shared memory and CMA): a trivial region for host memory, a refusal with
// the reason for anything else.
#pragma once

#include <memory>

#include "base/status.h"
#include "transports/transport.h"

namespace ciuic::transport::common {

// `transport` names the transport in the refusal ("the TCP transport").
Status register_host_memory(const char* transport, int pointer_kind,
                            std::unique_ptr<MemoryRegion>* out);

}  // namespace ciuic::transport::common
