// ncclTunerPlugin_v5: see tuner.h for what it changes and why.
#include "plugins/nccl/tuner.h"

#include <algorithm>

#include "base/config.h"
#include "base/log.h"
#include "plugins/nccl/plugin_core.h"

namespace ciuic::nccl_plugin {
namespace {

const config::BoolParam kTunerEnabled{
    "CIUIC_NCCL_TUNER", true,
    "Whether the NCCL plugin's tuner corrects NCCL's cost model for host-staged networking "
    "(0: NCCL's own model, unchanged)"};
constexpr int64_t kDefaultLlSpeedMbps = 16000;  // 2 GB/s
const config::IntParam kLlSpeedMbps{
    "CIUIC_NCCL_LL_SPEED_MBPS", kDefaultLlSpeedMbps,
    "LL protocol bandwidth across nodes the NCCL tuner gives NCCL's cost model, in Mb/s "
    "(LL lines staged through host memory run near 1 GB/s whatever the link)"};
const config::IntParam kChannelBytes{
    "CIUIC_NCCL_CHANNEL_BYTES", 512 << 10,
    "With one rank per node, the NCCL tuner gives a collective one channel per this many "
    "bytes (0: NCCL's channel count)"};

constexpr uint32_t kTunerMagic = 0x7475'6e72;  // "tunr"
// Above this many channels' worth of data the count is NCCL's: the collective fills them.
constexpr int kMaxTunedChannels = 16;

struct TunerContext {
  uint32_t magic = kTunerMagic;
  size_t n_ranks = 0;
  size_t n_nodes = 0;
  TunerPolicy policy;
};

ncclResult_t tuner_init(void** context, uint64_t comm_id, size_t n_ranks, size_t n_nodes,
                        ncclDebugLogger_t, ncclNvlDomainInfo_v5_t*,
                        ncclTunerConstants_v5_t* constants) {
  return guarded("tuner init", [&] {
    if (context == nullptr) return report(invalid_argument("context is NULL"), "tuner init");
    auto* ctx = new TunerContext;  // bad_alloc becomes an error in guarded()
    ctx->n_ranks = n_ranks;
    ctx->n_nodes = n_nodes;
    ctx->policy = tuner_policy_from_params();
    if (ctx->policy.enabled && n_nodes > 1) {
      apply_tuner_constants(ctx->policy, n_nodes, constants);
      CIUIC_LOG_INFO(log::kInit,
                     "tuner for communicator %016llx (%zu ranks, %zu nodes): LL across nodes "
                     "modeled at %.1f GB/s; %s",
                     static_cast<unsigned long long>(comm_id), n_ranks, n_nodes,
                     ctx->policy.ll_max_gbytes_per_s,
                     n_ranks == n_nodes && ctx->policy.bytes_per_channel > 0
                         ? "one channel per CIUIC_NCCL_CHANNEL_BYTES of a collective"
                         : "NCCL's channel counts");
    }
    *context = ctx;
    return ncclSuccess;
  });
}

TunerContext* tuner_context(void* context) {
  auto* ctx = static_cast<TunerContext*>(context);
  return ctx != nullptr && ctx->magic == kTunerMagic ? ctx : nullptr;
}

ncclResult_t tuner_get_coll_info(void* context, ncclFunc_t collective, size_t n_bytes, int,
                                 float**, int, int, int, int* n_channels) {
  return guarded("tuner getCollInfo", [&] {
    TunerContext* ctx = tuner_context(context);
    if (ctx == nullptr || n_channels == nullptr)
      return report(invalid_argument("not a ciuic tuner context"), "tuner getCollInfo");
    const int channels =
        tuner_channels(ctx->policy, ctx->n_ranks, ctx->n_nodes, collective, n_bytes);
    if (channels > 0) *n_channels = channels;
    return ncclSuccess;
  });
}

ncclResult_t tuner_finalize(void* context) {
  return guarded("tuner finalize", [&] {
    TunerContext* ctx = tuner_context(context);
    if (context != nullptr && ctx == nullptr)
      return report(invalid_argument("not a ciuic tuner context"), "tuner finalize");
    if (ctx != nullptr) ctx->magic = 0;
    delete ctx;
    return ncclSuccess;
  });
}

}  // namespace

TunerPolicy tuner_policy_from_params() {
  TunerPolicy policy;
  policy.enabled = kTunerEnabled.get();
  const int64_t ll_mbps = kLlSpeedMbps.get();
  policy.ll_max_gbytes_per_s =
      static_cast<double>(ll_mbps > 0 ? ll_mbps : kDefaultLlSpeedMbps) / 8000.0;
  const int64_t channel_bytes = kChannelBytes.get();
  policy.bytes_per_channel = channel_bytes > 0 ? static_cast<size_t>(channel_bytes) : 0;
  return policy;
}

void apply_tuner_constants(const TunerPolicy& policy, size_t n_nodes,
                           ncclTunerConstants_v5_t* constants) {
  if (!policy.enabled || n_nodes <= 1 || constants == nullptr) return;
  // Scales 1 (two nodes) and 2 (more) of every CPU-vendor row; scale 0 is the single-node
  // model, indexed by GPU generation, and stays NCCL's.
  for (auto& row : constants->llMaxBws)
    for (int scale = 1; scale < NCCL_NUM_TUNING_SCALES_V5; ++scale)
      row[scale] = std::min(row[scale], policy.ll_max_gbytes_per_s);
}

int tuner_channels(const TunerPolicy& policy, size_t n_ranks, size_t n_nodes,
                   ncclFunc_t collective, size_t n_bytes) {
  if (!policy.enabled || policy.bytes_per_channel == 0 || n_nodes <= 1 || n_ranks != n_nodes)
    return 0;
  switch (collective) {
    case ncclFuncBroadcast:
    case ncclFuncReduce:
    case ncclFuncAllGather:
    case ncclFuncReduceScatter:
    case ncclFuncAllReduce:
      break;
    default:
      return 0;
  }
  const size_t wanted = std::max<size_t>(1, (n_bytes + policy.bytes_per_channel - 1) /
                                                policy.bytes_per_channel);
  return wanted < kMaxTunedChannels ? static_cast<int>(wanted) : 0;
}

}  // namespace ciuic::nccl_plugin

namespace plugin = ciuic::nccl_plugin;

extern "C" {

__attribute__((visibility("default"))) extern const ncclTuner_v5_t ncclTunerPlugin_v5;

const ncclTuner_v5_t ncclTunerPlugin_v5 = {
    .name = "ciuic",
    .init = plugin::tuner_init,
    .getCollInfo = plugin::tuner_get_coll_info,
    .finalize = plugin::tuner_finalize,
};

}  // extern "C"
