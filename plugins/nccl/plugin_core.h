// The NCCL net plugin's core: one v11-shaped implementation over transport::Transport.
// plugin_exports.cc adapts it to each ncclNet_vN table NCCL may look for.
//
// Objects handed to NCCL as void* (contexts, listen/send/recv comms, memory handles,
// requests) all start with a magic word, so a pointer of the wrong kind is reported as
// ncclInvalidArgument instead of being used.
//
// Threads: NCCL calls init/finalize from its init thread, connection setup and
// registration from per-communicator service threads, and isend/irecv/test from
// progress threads, several communicators at once. Global state is under one mutex; a
// context under its own; a data comm's request pool under the comm's mutex (one progress
// thread drives it, but close and registration may come from the service thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "base/status.h"
#include "plugins/nccl/nccl_net_abi.h"

namespace ciuic::nccl_plugin {

// Largest single transfer offered to NCCL: test() reports sizes as int, so a transfer must
// stay below 2 GiB; NCCL splits larger operations by this value.
constexpr size_t kMaxTransferBytes = size_t{1} << 30;

// Every error reaches NCCL as an ncclResult_t with a WARN naming what failed and why.
ncclResult_t report(const Status& status, const char* operation);
// The same code without the log line (for errors already reported once).
ncclResult_t report_quietly(const Status& status);

// Runs `body` (returning ncclResult_t) so that no exception crosses into NCCL.
template <typename Body>
ncclResult_t guarded(const char* operation, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    return report(internal_error(std::string("unexpected exception: ") + e.what()), operation);
  } catch (...) {
    return report(internal_error("unexpected exception"), operation);
  }
}

// ---- lifecycle (plugin_core.cc) ----
// v11: one context per communicator; the transport is created by the first and destroyed
// by the last finalize. finalize(nullptr) is a no-op.
ncclResult_t init_context(void** ctx, uint64_t comm_id, int traffic_class, ncclDebugLogger_t logger);
ncclResult_t finalize_context(void* ctx);
// NCCL before 2.28 (v8..v10) calls init once and never finalizes: one shared context,
// released when the library is unloaded.
ncclResult_t init_legacy(ncclDebugLogger_t logger);
void* legacy_context();

ncclResult_t devices(int* ndev);
ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props);

// ---- connection setup (plugin_core.cc) ----
ncclResult_t listen(void* ctx, int dev, void* handle, void** listen_comm);
ncclResult_t connect(void* ctx, int dev, void* handle, void** send_comm);
ncclResult_t accept(void* listen_comm, void** recv_comm);
ncclResult_t close_listen(void* listen_comm);

// ---- data path (plugin_data.cc) ----
ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mhandle);
ncclResult_t dereg_mr(void* comm, void* mhandle);
ncclResult_t isend(void* send_comm, void* data, size_t size, int tag, void* mhandle, void** request);
ncclResult_t irecv(void* recv_comm, int n, void** data, const size_t* sizes, const int* tags,
                   void** mhandles, void** request);
ncclResult_t iflush(void* recv_comm, int n, void** data, int* sizes, void** mhandles,
                    void** request);
ncclResult_t test(void* request, int* done, int* sizes);
ncclResult_t close_send(void* send_comm);
ncclResult_t close_recv(void* recv_comm);

}  // namespace ciuic::nccl_plugin
