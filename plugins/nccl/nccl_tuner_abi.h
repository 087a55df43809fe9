// NCCL's tuner-plugin ABI (ncclTuner_v5: NCCL 2.28, and 2.29 after its v6), declared from
// its documented layout. NCCL looks for the tuner first in NCCL_TUNER_PLUGIN's library and,
// when that is unset, in the net plugin's own library: exporting ncclTunerPlugin_v5 here
// makes NCCL use ciuic's tuner whenever it uses ciuic's network, with nothing more to set.
//
// As in nccl_net_abi.h, the layout is pinned by static_asserts (LP64).
#pragma once

#include <cstddef>
#include <cstdint>

#include "plugins/nccl/nccl_net_abi.h"

extern "C" {

// NCCL's collective kinds (ncclFunc_t), as numbered in its nccl_common.h.
typedef enum {
  ncclFuncBroadcast = 0,
  ncclFuncReduce = 1,
  ncclFuncAllGather = 2,
  ncclFuncReduceScatter = 3,
  ncclFuncAllReduce = 4,
  ncclFuncSendRecv = 5,
  ncclFuncSend = 6,
  ncclFuncRecv = 7,
  ncclFuncAlltoAll = 8,
  ncclFuncScatter = 9,
  ncclFuncGather = 10,
} ncclFunc_t;

// Indices of the cost table and of the constants below.
#define NCCL_ALGO_TREE 0
#define NCCL_ALGO_RING 1
#define NCCL_PROTO_LL 0
#define NCCL_PROTO_LL128 1
#define NCCL_PROTO_SIMPLE 2
#define NCCL_ALGO_PROTO_IGNORE -1.0
#define NCCL_HW_NET 2

#define NCCL_NUM_ALGORITHMS_V5 7  // Tree, Ring, CollNetDirect, CollNetChain, NVLS, NVLSTree, PAT
#define NCCL_NUM_PROTOCOLS_V5 3   // LL, LL128, Simple
#define NCCL_NUM_HW_LINKS_V5 3    // NVLink, PCI, network
#define NCCL_NUM_COMPCAPS_V5 4    // first index of the bandwidth tables (see below)
#define NCCL_NUM_TUNING_SCALES_V5 3  // second index: one node, two nodes, four and more

typedef struct {
  int nNvlDomains;
  int minRanksPerNvlDomain;
  int maxRanksPerNvlDomain;
} ncclNvlDomainInfo_v5_t;

// The constants NCCL's cost model starts from; init may change them for its communicator
// before NCCL computes its latency and bandwidth tables. For more than one node the first
// index of llMaxBws is the CPU vendor (0: Intel and others, 1: AMD or mixed), the second
// the scale (1: two nodes, 2: more); for one node the first is the GPU generation.
typedef struct {
  double baseLatencies[NCCL_NUM_ALGORITHMS_V5][NCCL_NUM_PROTOCOLS_V5];
  double hwLatencies[NCCL_NUM_HW_LINKS_V5][NCCL_NUM_ALGORITHMS_V5][NCCL_NUM_PROTOCOLS_V5];
  double llMaxBws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];  // GB/s
  double perChMaxRingLL128Bws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
  double perChMaxTreeLL128Bws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
  double perChMaxTreeBws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
  double perChMaxNVLSTreeBws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
} ncclTunerConstants_v5_t;

typedef struct {
  const char* name;
  // One call per communicator, before NCCL builds its cost model.
  ncclResult_t (*init)(void** context, uint64_t commId, size_t nRanks, size_t nNodes,
                       ncclDebugLogger_t logFunction, ncclNvlDomainInfo_v5_t* nvlDomainInfo,
                       ncclTunerConstants_v5_t* constants);
  // Per collective: collCostTable is NCCL's estimated times (µs) as one float[numAlgo][numProto]
  // array passed as float** (not an array of rows), NCCL_ALGO_PROTO_IGNORE where a choice is
  // unavailable; NCCL then takes the cheapest.
  // *nChannels left at 0 keeps NCCL's channel count, otherwise replaces it.
  ncclResult_t (*getCollInfo)(void* context, ncclFunc_t collType, size_t nBytes, int numPipeOps,
                              float** collCostTable, int numAlgo, int numProto, int regBuff,
                              int* nChannels);
  ncclResult_t (*finalize)(void* context);
} ncclTuner_v5_t;

}  // extern "C"

static_assert(sizeof(ncclFunc_t) == 4);
static_assert(sizeof(ncclNvlDomainInfo_v5_t) == 12);
static_assert(sizeof(ncclTunerConstants_v5_t) == 1152);
static_assert(offsetof(ncclTunerConstants_v5_t, hwLatencies) == 168);
static_assert(offsetof(ncclTunerConstants_v5_t, llMaxBws) == 672);
static_assert(offsetof(ncclTunerConstants_v5_t, perChMaxRingLL128Bws) == 768);
static_assert(offsetof(ncclTunerConstants_v5_t, perChMaxNVLSTreeBws) == 1056);
static_assert(sizeof(ncclTuner_v5_t) == 8 * 4);
static_assert(offsetof(ncclTuner_v5_t, finalize) == 8 * 3);
