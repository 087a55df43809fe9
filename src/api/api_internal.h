// What the C API's files share: the handle structs, handle lookup, and error recording.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "base/status.h"
#include "ciuic/ciuic.h"
#include "core/comm.h"
#include "cuda/device.h"

struct ciuic_comm {
  std::shared_ptr<ciuic::core::Communicator> impl;
  std::mutex error_mutex;
  std::string last_error;
  ciuic::cuda::CommState cuda;  // CUDA buffers' stream engine (src/cuda), made on first use
};

struct ciuic_request {
  std::shared_ptr<ciuic::core::Communicator> comm;  // keeps the communicator alive
  std::shared_ptr<ciuic_comm> handle;                // where errors are recorded
  std::shared_ptr<ciuic::core::Operation> op;
  std::shared_ptr<ciuic::cuda::DeviceOp> device_op;  // instead of op, for a call on a CUDA stream
};

namespace ciuic::api {

// Live communicator handles: a destroyed or made-up handle is an error, not a crash.
void register_handle(const std::shared_ptr<ciuic_comm>& handle);
std::shared_ptr<ciuic_comm> unregister_handle(ciuic_comm* handle);
Status lookup(ciuic_comm* handle, std::shared_ptr<ciuic_comm>* out);

// Records the error where ciuic_comm_get_last_error finds it (the comm's, or the
// calling thread's when there is no comm yet) and returns its code.
ciuic_result_t record(ciuic_comm* handle, const Status& status);
ciuic_result_t record_for(const std::shared_ptr<ciuic_comm>& handle, const Status& status);
// The calling thread's last error from a call that had no live communicator.
const std::string& thread_error();

}  // namespace ciuic::api
