// Which transport carries which peer: ranks of one node talk over the local (shared
// memory) transport and everyone else over the network one; CIUIC_LOCAL_SIZE draws the
// node boundaries, CIUIC_LOCAL_TRANSPORT=none and a forced CIUIC_TRANSPORT turn the local
// transport off. Checked on the connections an all-to-all opened (every pair talks).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/api_internal.h"
#include "support/cluster.h"
#include "support/scoped_config.h"

namespace ciuic::testing {
namespace {

// What each rank's connection to each peer says it is, after an all-to-all.
std::vector<std::vector<std::string>> peer_descriptions(const Cluster& cluster) {
  const int n = cluster.size();
  std::vector<std::vector<std::string>> out(static_cast<size_t>(n),
                                            std::vector<std::string>(static_cast<size_t>(n)));
  cluster.run([&](int rank, ciuic_comm_t comm) {
    std::vector<int32_t> send(static_cast<size_t>(n)), recv(static_cast<size_t>(n), -1);
    for (int p = 0; p < n; ++p) send[static_cast<size_t>(p)] = rank * 100 + p;
    ASSERT_EQ(ciuic_alltoall(send.data(), recv.data(), 1, CIUIC_INT32, comm, nullptr),
              CIUIC_SUCCESS)
        << ciuic_comm_get_last_error(comm);
    for (int p = 0; p < n; ++p) EXPECT_EQ(recv[static_cast<size_t>(p)], p * 100 + rank);
    for (int p = 0; p < n; ++p)
      if (p != rank)
        out[static_cast<size_t>(rank)][static_cast<size_t>(p)] = comm->impl->describe_peer(p);
  });
  return out;
}

bool is_shm(const std::string& description) {
  return description.find("(shm") != std::string::npos;
}

TEST(LocalTransport, EveryPeerOfOneHostUsesSharedMemoryByDefault) {
  Cluster cluster(3);
  ASSERT_TRUE(cluster.ok());
  auto d = peer_descriptions(cluster);
  for (int r = 0; r < 3; ++r)
    for (int p = 0; p < 3; ++p)
      if (p != r) {
        EXPECT_TRUE(is_shm(d[r][p])) << "rank " << r << " -> " << p << ": " << d[r][p];
      }
}

TEST(LocalTransport, LocalSizeDrawsNodesSharedMemoryInsideTcpBetween) {
  ScopedConfig local_size("CIUIC_LOCAL_SIZE", "2");  // nodes {0,1} {2,3} {4}
  Cluster cluster(5);
  ASSERT_TRUE(cluster.ok());
  auto d = peer_descriptions(cluster);
  for (int r = 0; r < 5; ++r) {
    for (int p = 0; p < 5; ++p) {
      if (p == r) continue;
      const bool same_node = r / 2 == p / 2;
      EXPECT_EQ(is_shm(d[r][p]), same_node) << "rank " << r << " -> " << p << ": " << d[r][p];
      if (!same_node) {
        EXPECT_NE(d[r][p].find("tcp"), std::string::npos) << d[r][p];
      }
    }
  }
}

TEST(LocalTransport, NoneOrAForcedNetworkTransportKeepsEveryoneOnIt) {
  for (const char* setting : {"none-local", "forced-tcp"}) {
    const bool none = std::string(setting) == "none-local";
    ScopedConfig local("CIUIC_LOCAL_TRANSPORT", none ? "none" : "auto");
    ScopedConfig transport("CIUIC_TRANSPORT", none ? "auto" : "tcp");
    Cluster cluster(3);
    ASSERT_TRUE(cluster.ok());
    auto d = peer_descriptions(cluster);
    for (int r = 0; r < 3; ++r)
      for (int p = 0; p < 3; ++p)
        if (p != r) {
          EXPECT_FALSE(is_shm(d[r][p]))
              << setting << ": rank " << r << " -> " << p << ": " << d[r][p];
        }
  }
}

TEST(LocalTransport, UnknownLocalTransportIsAClearInitError) {
  ScopedConfig local("CIUIC_LOCAL_TRANSPORT", "carrier-pigeon");
  ciuic_unique_id_t id;
  ASSERT_EQ(ciuic_get_unique_id(&id), CIUIC_SUCCESS);
  ciuic_comm_t comm = nullptr;
  EXPECT_EQ(ciuic_comm_init_rank(&comm, 1, id, 0), CIUIC_ERR_INVALID_ARGUMENT);
  const std::string message = ciuic_comm_get_last_error(nullptr);
  EXPECT_NE(message.find("CIUIC_LOCAL_TRANSPORT"), std::string::npos) << message;
  EXPECT_NE(message.find("carrier-pigeon"), std::string::npos) << message;
}

}  // namespace
}  // namespace ciuic::testing
