// ciuic's NCCL tuner seen the way NCCL 2.28+ sees it: found by name (ncclTunerPlugin_v5) in
// the net plugin's own library, init per communicator with NCCL's constants, then
// getCollInfo per collective. NCCL initializes the net plugin before the tuner, and so do
// these tests: that init is where the plugin reads its environment afresh.
#include <cstdlib>
#include <vector>

#include "plugins/nccl/nccl_tuner_abi.h"
#include "unit/nccl_plugin_test_helpers.h"

namespace ciuic::nccl_plugin_test {
namespace {

// NCCL's own llMaxBws for one node (scale 0) and across nodes (scales 1, 2), GB/s: any
// figures well above the tuner's serve, the test checks what moved.
constexpr double kNcclLlMaxBws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5] = {
    {39.0, 39.0, 20.4}, {87.7, 22.5, 19.0}, {141.0, 45.0, 35.0}, {282.0, 90.0, 70.0}};

class NcclTunerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("CIUIC_SOCKET_IFNAME", "lo", 1);
    ASSERT_NE(lib_.handle(), nullptr) << "dlopen " << CIUIC_NCCL_PLUGIN_PATH << ": " << dlerror();
    net_ = lib_.table<ncclNet_v11_t>("ncclNetPlugin_v11");
    tuner_ = lib_.table<ncclTuner_v5_t>("ncclTunerPlugin_v5");
    ASSERT_NE(net_, nullptr);
    ASSERT_NE(tuner_, nullptr) << "ncclTunerPlugin_v5 is not exported";
  }
  void TearDown() override {
    for (const char* name :
         {"CIUIC_NCCL_TUNER", "CIUIC_NCCL_LL_SPEED_MBPS", "CIUIC_NCCL_CHANNEL_BYTES"})
      unsetenv(name);
  }

  // NCCL's order for one communicator: net init, then tuner init with its constants.
  void* init(size_t n_ranks, size_t n_nodes, ncclTunerConstants_v5_t* constants) {
    ncclNetCommConfig_v11_t config{NCCL_NET_TRAFFIC_CLASS_UNDEF};
    EXPECT_EQ(net_->init(&net_ctx_, 0x77, &config, capture_logger, nullptr), ncclSuccess)
        << all_logged();
    for (int i = 0; i < NCCL_NUM_COMPCAPS_V5; ++i)
      for (int s = 0; s < NCCL_NUM_TUNING_SCALES_V5; ++s)
        constants->llMaxBws[i][s] = kNcclLlMaxBws[i][s];
    ncclNvlDomainInfo_v5_t nvl{1, 1, 1};
    void* ctx = nullptr;
    EXPECT_EQ(tuner_->init(&ctx, 0x77, n_ranks, n_nodes, capture_logger, &nvl, constants),
              ncclSuccess);
    EXPECT_NE(ctx, nullptr);
    return ctx;
  }
  void finalize(void* ctx) {
    EXPECT_EQ(tuner_->finalize(ctx), ncclSuccess);
    EXPECT_EQ(net_->finalize(net_ctx_), ncclSuccess);
    net_ctx_ = nullptr;
  }
  // getCollInfo as NCCL calls it: a float[7][3] cost table passed as float**.
  int channels_for(void* ctx, ncclFunc_t collective, size_t bytes) {
    float table[NCCL_NUM_ALGORITHMS_V5][NCCL_NUM_PROTOCOLS_V5];
    for (auto& row : table)
      for (float& cost : row) cost = 10.0f;
    int channels = 0;
    EXPECT_EQ(tuner_->getCollInfo(ctx, collective, bytes, 1, reinterpret_cast<float**>(table),
                                  NCCL_NUM_ALGORITHMS_V5, NCCL_NUM_PROTOCOLS_V5, 0, &channels),
              ncclSuccess);
    for (auto& row : table)
      for (float cost : row) EXPECT_EQ(cost, 10.0f) << "the tuner changed NCCL's costs";
    return channels;
  }

  // NCCL's constants as they came in, and NCCL's channel count.
  void expect_nccls_model(void* ctx, const ncclTunerConstants_v5_t& constants) {
    for (int i = 0; i < NCCL_NUM_COMPCAPS_V5; ++i)
      for (int s = 0; s < NCCL_NUM_TUNING_SCALES_V5; ++s)
        EXPECT_EQ(constants.llMaxBws[i][s], kNcclLlMaxBws[i][s]) << "[" << i << "][" << s << "]";
    EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, 8), 0);
  }

  PluginLibrary lib_;
  const ncclNet_v11_t* net_ = nullptr;
  const ncclTuner_v5_t* tuner_ = nullptr;
  void* net_ctx_ = nullptr;
};

TEST_F(NcclTunerTest, AcrossNodesLlIsCappedAndSingleNodeModelKept) {
  ncclTunerConstants_v5_t constants{};
  void* ctx = init(2, 2, &constants);
  for (int i = 0; i < NCCL_NUM_COMPCAPS_V5; ++i) {
    EXPECT_EQ(constants.llMaxBws[i][0], kNcclLlMaxBws[i][0]) << "row " << i;
    EXPECT_EQ(constants.llMaxBws[i][1], 2.0) << "row " << i;  // 16000 Mb/s
    EXPECT_EQ(constants.llMaxBws[i][2], 2.0) << "row " << i;
  }
  finalize(ctx);

  // Lower only: a figure above NCCL's leaves NCCL's.
  setenv("CIUIC_NCCL_LL_SPEED_MBPS", "400000", 1);  // 50 GB/s
  ctx = init(8, 8, &constants);
  EXPECT_EQ(constants.llMaxBws[0][1], 39.0);
  EXPECT_EQ(constants.llMaxBws[0][2], 20.4);
  EXPECT_EQ(constants.llMaxBws[2][1], 45.0);
  EXPECT_EQ(constants.llMaxBws[3][2], 50.0);
  finalize(ctx);

  ctx = init(4, 1, &constants);  // one node: nothing crosses the network
  expect_nccls_model(ctx, constants);
  finalize(ctx);
}

TEST_F(NcclTunerTest, OneRankPerNodeGetsOneChannelPerShare) {
  ncclTunerConstants_v5_t constants{};
  void* ctx = init(2, 2, &constants);
  const size_t share = 512 << 10;
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, 8), 1);
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, share), 1);
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, share + 1), 2);
  EXPECT_EQ(channels_for(ctx, ncclFuncAllGather, 3 * share), 3);
  EXPECT_EQ(channels_for(ctx, ncclFuncReduceScatter, 4 * share), 4);
  EXPECT_EQ(channels_for(ctx, ncclFuncBroadcast, 15 * share), 15);
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, 16 * share), 0) << "large: NCCL's count";
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, size_t{1} << 30), 0);
  EXPECT_EQ(channels_for(ctx, ncclFuncSendRecv, 8), 0) << "not a collective it models";
  finalize(ctx);

  setenv("CIUIC_NCCL_CHANNEL_BYTES", "1M", 1);
  ctx = init(3, 3, &constants);
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, 1 << 20), 1);
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, (1 << 20) + 1), 2);
  finalize(ctx);

  setenv("CIUIC_NCCL_CHANNEL_BYTES", "0", 1);
  ctx = init(2, 2, &constants);
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, 8), 0);
  EXPECT_EQ(constants.llMaxBws[0][1], 2.0) << "the LL cap does not depend on the channel rule";
  finalize(ctx);
}

TEST_F(NcclTunerTest, SeveralRanksPerNodeKeepNcclChannels) {
  ncclTunerConstants_v5_t constants{};
  void* ctx = init(16, 2, &constants);  // 8 GPUs per node: channels also carry NVLink traffic
  EXPECT_EQ(channels_for(ctx, ncclFuncAllReduce, 8), 0);
  EXPECT_EQ(constants.llMaxBws[0][1], 2.0);
  finalize(ctx);
}

TEST_F(NcclTunerTest, DisabledLeavesNcclModelAlone) {
  setenv("CIUIC_NCCL_TUNER", "0", 1);
  ncclTunerConstants_v5_t constants{};
  void* ctx = init(2, 2, &constants);
  expect_nccls_model(ctx, constants);
  finalize(ctx);
}

TEST_F(NcclTunerTest, WrongContextIsAnErrorNotACrash) {
  int not_a_context[8] = {};
  int channels = 0;
  EXPECT_EQ(
      tuner_->getCollInfo(not_a_context, ncclFuncAllReduce, 8, 1, nullptr, 7, 3, 0, &channels),
      ncclInvalidArgument);
  EXPECT_EQ(tuner_->getCollInfo(nullptr, ncclFuncAllReduce, 8, 1, nullptr, 7, 3, 0, &channels),
            ncclInvalidArgument);
  EXPECT_EQ(channels, 0);
  EXPECT_EQ(tuner_->finalize(not_a_context), ncclInvalidArgument);
  EXPECT_EQ(tuner_->finalize(nullptr), ncclSuccess);
  EXPECT_EQ(tuner_->init(nullptr, 1, 2, 2, capture_logger, nullptr, nullptr), ncclInvalidArgument);
}

}  // namespace
}  // namespace ciuic::nccl_plugin_test
