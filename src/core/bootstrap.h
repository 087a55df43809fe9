// Bootstrap: how ranks find each other before any transport exists.
//
// The unique id carries the root's address and a random 128-bit job secret. The root
// (the process that made the id, or rank 0 under a launcher) runs a small TCP store;
// every rank opens one authenticated connection to it per communicator (see
// base/handshake.h: magic, protocol version, proof of the secret) and exchanges what it
// needs with allgather. Anything unauthenticated, malformed or oversized is refused and
// logged; a slow or hostile client never blocks the others.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/handshake.h"
#include "base/net.h"
#include "base/status.h"
#include "ciuic/ciuic.h"

namespace ciuic::core {

constexpr uint32_t kBootstrapMagic = 0x43495543;  // "CIUC"
constexpr uint16_t kBootstrapVersion = 1;

struct UniqueId {
  net::SocketAddress root;
  Key128 secret{};

  void encode(ciuic_unique_id_t* out) const;
  static Status decode(const ciuic_unique_id_t& in, UniqueId* out);  // checks magic/version
};

// The store served at the root. Started by ciuic_get_unique_id (or by rank 0 under a
// launcher); lives while anyone holds the shared_ptr.
class StoreServer {
 public:
  // Binds to `bind` (port 0 = ephemeral) and serves in a background thread.
  static Status start(const net::SocketAddress& bind, const Key128& secret,
                      std::shared_ptr<StoreServer>* out);
  virtual ~StoreServer() = default;
  virtual const net::SocketAddress& address() const = 0;
};

// Keeps servers started by ciuic_get_unique_id alive until a communicator of this
// process takes them over (or the process exits).
void adopt_server(std::shared_ptr<StoreServer> server);
std::shared_ptr<StoreServer> find_server(const net::SocketAddress& address);
// Drops the table's reference (the server stops once no communicator holds it either).
void forget_server(const net::SocketAddress& address);

// One rank's connection to the store, scoped to a namespace (one per communicator):
// ranks of different namespaces never see each other's data.
class StoreClient {
 public:
  // Connects (retrying until `deadline` while the root is not up yet), authenticates and
  // registers `rank` of `nranks` in `name_space`. A second registration of the same rank
  // in the same namespace is refused; so is a different nranks.
  static Status connect(const UniqueId& id, std::string_view name_space, int rank, int nranks,
                        Deadline deadline, std::unique_ptr<StoreClient>* out);
  virtual ~StoreClient() = default;

  // Every rank of the namespace contributes `mine` under `tag`; *all gets them in rank
  // order once everyone has. Fails if a rank leaves first (naming it) or at the deadline
  // (naming the ranks that have not contributed).
  virtual Status allgather(std::string_view tag, const std::vector<uint8_t>& mine,
                           std::vector<std::vector<uint8_t>>* all, Deadline deadline) = 0;
  virtual int rank() const = 0;
  virtual int nranks() const = 0;
};

// Where rank, size and root come from when the application calls ciuic_comm_init_env.
struct LaunchInfo {
  int rank = -1;
  int nranks = -1;
  int local_rank = -1;
  UniqueId id;            // root address and secret
  bool have_secret = false;  // false: no CIUIC_SECRET given, a job-derived key is used
  std::string source;     // "ciuic (CIUIC_RANK...)", "torchrun", "Open MPI", "Slurm"
};
// Reads CIUIC_RANK/CIUIC_WORLD_SIZE/CIUIC_ROOT/CIUIC_SECRET, else torchrun (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT), else Open MPI (OMPI_COMM_WORLD_*), else Slurm
// (SLURM_PROCID, SLURM_NTASKS); errors say which variable is missing and what to set.
Status read_launch_env(LaunchInfo* out);

}  // namespace ciuic::core
