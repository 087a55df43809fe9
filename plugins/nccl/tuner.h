// ciuic's NCCL tuner: NCCL's cost model corrected for a network reached through host memory.
//
// NCCL sizes its channels from the link speed the net plugin reports, and models the LL
// protocol's bandwidth as half of that. Both fit a NIC that writes into GPU memory. ciuic's
// plugin stages through host buffers (ptrSupport is host only), where LL's 8-byte
// flag-and-data lines cross PCIe to host memory and are polled there: LL runs near
// 1 GB/s whatever the link, and every channel adds messages whose fixed cost a small
// collective cannot hide. Reporting a slower link would fix small collectives and cap
// large ones (two channels instead of four); the tuner keeps the speed and fixes the model:
//   - init: LL's bandwidth across nodes is capped at CIUIC_NCCL_LL_SPEED_MBPS, so NCCL's own
//     cost model moves to Simple where LL stops paying;
//   - getCollInfo: with one rank per node (every channel crosses the network) a collective
//     gets one channel per CIUIC_NCCL_CHANNEL_BYTES of data, so small and mid sizes stop
//     paying for channels they cannot fill. Large ones keep NCCL's count.
// A single-node communicator is left as NCCL models it. docs/nccl-plugin.md has the figures.
#pragma once

#include <cstddef>
#include <cstdint>

#include "plugins/nccl/nccl_tuner_abi.h"

namespace ciuic::nccl_plugin {

// Read from the parameters (tuner_policy_from_params), where the defaults are.
struct TunerPolicy {
  bool enabled = false;
  double ll_max_gbytes_per_s = 0;  // LL's bandwidth across nodes, GB/s
  size_t bytes_per_channel = 0;    // 0: NCCL's channel counts
};

// The policy from CIUIC_NCCL_TUNER, CIUIC_NCCL_LL_SPEED_MBPS and CIUIC_NCCL_CHANNEL_BYTES.
TunerPolicy tuner_policy_from_params();

// What init changes in NCCL's constants for a communicator of n_nodes nodes: the
// multi-node entries of llMaxBws, lowered to the policy's figure (never raised).
void apply_tuner_constants(const TunerPolicy& policy, size_t n_nodes,
                           ncclTunerConstants_v5_t* constants);

// The channel count for one collective of n_bytes, or 0 to keep NCCL's.
int tuner_channels(const TunerPolicy& policy, size_t n_ranks, size_t n_nodes,
                   ncclFunc_t collective, size_t n_bytes);

}  // namespace ciuic::nccl_plugin
