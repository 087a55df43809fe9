// Where rank, size, root and secret come from under each launcher (ciuic_comm_init_env).
#include <cctype>
#include <optional>

#include "base/config.h"
#include "core/bootstrap.h"

namespace ciuic::core {
namespace {

const config::IntParam kRank{"CIUIC_RANK", -1, "This process's rank (with CIUIC_WORLD_SIZE)"};
const config::IntParam kWorldSize{"CIUIC_WORLD_SIZE", -1, "Number of ranks in the job"};
const config::IntParam kLocalRank{"CIUIC_LOCAL_RANK", -1,
                                  "This process's rank among those on its node (optional)"};
const config::StringParam kRoot{
    "CIUIC_ROOT", "",
    "host:port of the bootstrap root (rank 0); wins over MASTER_ADDR and the same-node default"};
const config::StringParam kSecret{
    "CIUIC_SECRET", "",
    "The job secret, 32 hex digits, identical on every rank; unset: derived from the job id"};

constexpr int kSameNodePortBase = 20000;
constexpr int kSameNodePortSpan = 40000;

// Fixed key for deriving values from a job's identity: every rank must compute the same.
constexpr Key128 kDerivationKey = {'c', 'i', 'u', 'i', 'c', '-', 'j', 'o',
                                   'b', '-', 'i', 'd', 'e', 'n', 't', '1'};

// A launcher's variable as a decimal integer; nullopt when unset.
Status foreign_int(const char* name, std::optional<int64_t>* out) {
  out->reset();
  std::optional<std::string> text = config::foreign_env(name);
  if (!text) return Status::Ok();
  const std::string& t = *text;
  bool digits = !t.empty() && t.size() <= 12;
  for (char ch : t) digits = digits && std::isdigit(static_cast<unsigned char>(ch));
  if (!digits) return invalid_argument(std::string(name) + "='" + t + "' is not a number");
  *out = std::stoll(t);
  return Status::Ok();
}

Status require_int(const char* name, const char* launcher, int64_t* out) {
  std::optional<int64_t> v;
  CIUIC_RETURN_IF_ERROR(foreign_int(name, &v));
  if (!v)
    return invalid_argument(std::string(launcher) + " launch detected but " + name +
                            " is not set");
  *out = *v;
  return Status::Ok();
}

Status ciuic_int(const config::IntParam& param, int64_t* out) {
  *out = param.get();
  if (*out == -1 && param.is_set() && param.current_text() != "-1")
    return invalid_argument(std::string(param.name()) + "='" + param.current_text() +
                            "' is not an integer");
  return Status::Ok();
}

uint16_t port_from_job_id(const std::string& job_id) {
  uint64_t h = siphash24(kDerivationKey, job_id.data(), job_id.size());
  return static_cast<uint16_t>(kSameNodePortBase + h % kSameNodePortSpan);
}

Key128 secret_from_job_id(const std::string& identity) {
  Key128 key;
  std::string first = "secret-a:" + identity;
  std::string second = "secret-b:" + identity;
  uint64_t a = siphash24(kDerivationKey, first.data(), first.size());
  uint64_t b = siphash24(kDerivationKey, second.data(), second.size());
  for (int i = 0; i < 8; ++i) {
    key[static_cast<size_t>(i)] = static_cast<uint8_t>(a >> (8 * i));
    key[static_cast<size_t>(8 + i)] = static_cast<uint8_t>(b >> (8 * i));
  }
  return key;
}

Status parse_secret(const std::string& text, Key128* out) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool good = text.size() == 32;
  for (size_t i = 0; good && i < 16; ++i) {
    int hi = hex(text[2 * i]);
    int lo = hex(text[2 * i + 1]);
    good = hi >= 0 && lo >= 0;
    if (good) (*out)[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  if (!good)
    return invalid_argument("CIUIC_SECRET must be 32 hex digits (128 bits), identical on every "
                            "rank; got " + std::to_string(text.size()) + " characters");
  return Status::Ok();
}

// What each launcher tells us, before the root address is settled.
struct Detected {
  int64_t rank = -1;
  int64_t nranks = -1;
  int64_t local_rank = -1;
  std::string source;
  std::string job_id;        // identifies this job run; derives the secret (and port)
  bool single_node = false;  // every rank on this node: the root can be 127.0.0.1
  std::optional<std::string> master_addr;
  std::optional<int64_t> master_port;
};

Status detect_ciuic(Detected* d) {
  CIUIC_RETURN_IF_ERROR(ciuic_int(kRank, &d->rank));
  CIUIC_RETURN_IF_ERROR(ciuic_int(kWorldSize, &d->nranks));
  CIUIC_RETURN_IF_ERROR(ciuic_int(kLocalRank, &d->local_rank));
  if (!kRank.is_set()) return invalid_argument("CIUIC_WORLD_SIZE is set but CIUIC_RANK is not");
  if (!kWorldSize.is_set())
    return invalid_argument("CIUIC_RANK is set but CIUIC_WORLD_SIZE is not");
  d->source = "ciuic (CIUIC_RANK, CIUIC_WORLD_SIZE, CIUIC_ROOT)";
  d->job_id = "ciuic:" + kRoot.get();
  return Status::Ok();
}

Status detect_torchrun(Detected* d) {
  CIUIC_RETURN_IF_ERROR(require_int("RANK", "torchrun", &d->rank));
  CIUIC_RETURN_IF_ERROR(require_int("WORLD_SIZE", "torchrun", &d->nranks));
  std::optional<int64_t> local;
  CIUIC_RETURN_IF_ERROR(foreign_int("LOCAL_RANK", &local));
  d->local_rank = local.value_or(-1);
  d->master_addr = config::foreign_env("MASTER_ADDR");
  CIUIC_RETURN_IF_ERROR(foreign_int("MASTER_PORT", &d->master_port));
  d->source = "torchrun";
  d->job_id = "torchrun:" + d->master_addr.value_or("") + ":" +
              std::to_string(d->master_port.value_or(0)) + ":" +
              config::foreign_env("TORCHELASTIC_RUN_ID").value_or("");
  return Status::Ok();
}

Status detect_open_mpi(Detected* d) {
  CIUIC_RETURN_IF_ERROR(require_int("OMPI_COMM_WORLD_RANK", "Open MPI", &d->rank));
  CIUIC_RETURN_IF_ERROR(require_int("OMPI_COMM_WORLD_SIZE", "Open MPI", &d->nranks));
  std::optional<int64_t> local, local_size;
  CIUIC_RETURN_IF_ERROR(foreign_int("OMPI_COMM_WORLD_LOCAL_RANK", &local));
  CIUIC_RETURN_IF_ERROR(foreign_int("OMPI_COMM_WORLD_LOCAL_SIZE", &local_size));
  d->local_rank = local.value_or(-1);
  d->single_node = local_size && *local_size == d->nranks;
  std::optional<std::string> job = config::foreign_env("OMPI_MCA_ess_base_jobid");
  if (!job) job = config::foreign_env("PMIX_NAMESPACE");
  d->source = "Open MPI";
  if (job) d->job_id = "ompi:" + *job;
  return Status::Ok();
}

Status detect_slurm(Detected* d) {
  CIUIC_RETURN_IF_ERROR(require_int("SLURM_PROCID", "Slurm", &d->rank));
  CIUIC_RETURN_IF_ERROR(require_int("SLURM_NTASKS", "Slurm", &d->nranks));
  std::optional<int64_t> local, nodes;
  CIUIC_RETURN_IF_ERROR(foreign_int("SLURM_LOCALID", &local));
  CIUIC_RETURN_IF_ERROR(foreign_int("SLURM_NNODES", &nodes));
  d->local_rank = local.value_or(-1);
  d->single_node = nodes && *nodes == 1;
  std::optional<std::string> job = config::foreign_env("SLURM_JOB_ID");
  d->source = "Slurm";
  if (job) d->job_id = "slurm:" + *job + "." + config::foreign_env("SLURM_STEP_ID").value_or("");
  return Status::Ok();
}

Status resolve_root(const Detected& d, net::SocketAddress* root) {
  if (kRoot.is_set() && !kRoot.get().empty()) {
    Status s = net::parse_address(kRoot.get(), 0, root);
    if (!s.ok()) return s.prefix("CIUIC_ROOT='" + kRoot.get() + "'");
    if (root->port() == 0)
      return invalid_argument("CIUIC_ROOT='" + kRoot.get() +
                              "' has no port: set CIUIC_ROOT=<host of rank 0>:<port>");
    return Status::Ok();
  }
  if (d.master_addr || d.master_port) {
    if (!d.master_addr)
      return invalid_argument("MASTER_PORT is set but MASTER_ADDR is not: set MASTER_ADDR to "
                              "the host of rank 0, or CIUIC_ROOT=<host of rank 0>:<port>");
    if (!d.master_port)
      return invalid_argument("MASTER_ADDR is set but MASTER_PORT is not: set MASTER_PORT, or "
                              "CIUIC_ROOT=<host of rank 0>:<port>");
    // torch's own TCPStore holds MASTER_PORT; ciuic's root takes the next one.
    if (*d.master_port < 1 || *d.master_port >= 65535)
      return invalid_argument("MASTER_PORT=" + std::to_string(*d.master_port) +
                              " leaves no port above it for ciuic's root: set "
                              "CIUIC_ROOT=<host of rank 0>:<port>");
    Status s = net::parse_address(*d.master_addr, static_cast<uint16_t>(*d.master_port + 1), root);
    if (!s.ok()) return s.prefix("MASTER_ADDR='" + *d.master_addr + "'");
    root->set_port(static_cast<uint16_t>(*d.master_port + 1));
    return Status::Ok();
  }
  if (d.single_node && !d.job_id.empty()) {
    CIUIC_RETURN_IF_ERROR(net::parse_address("127.0.0.1", port_from_job_id(d.job_id), root));
    return Status::Ok();
  }
  std::string why = d.single_node ? "no job id to derive a port from"
                                  : "the ranks span several nodes";
  if (d.source.rfind("ciuic", 0) == 0) why = "CIUIC_ROOT is not set";
  if (d.source == "torchrun") why = "MASTER_ADDR and MASTER_PORT are not set";
  return invalid_argument(d.source + " launch: cannot tell where rank 0's bootstrap root is (" +
                          why + "): set CIUIC_ROOT=<host of rank 0>:<port>");
}

}  // namespace

Status read_launch_env(LaunchInfo* out) {
  Detected d;
  if (kRank.is_set() || kWorldSize.is_set()) {
    CIUIC_RETURN_IF_ERROR(detect_ciuic(&d));
  } else if (config::foreign_env("RANK") || config::foreign_env("WORLD_SIZE")) {
    CIUIC_RETURN_IF_ERROR(detect_torchrun(&d));
  } else if (config::foreign_env("OMPI_COMM_WORLD_RANK") ||
             config::foreign_env("OMPI_COMM_WORLD_SIZE")) {
    CIUIC_RETURN_IF_ERROR(detect_open_mpi(&d));
  } else if (config::foreign_env("SLURM_PROCID")) {
    CIUIC_RETURN_IF_ERROR(detect_slurm(&d));
  } else {
    return invalid_argument(
        "no launcher found: set CIUIC_RANK, CIUIC_WORLD_SIZE and CIUIC_ROOT=<host of rank "
        "0>:<port>, or start the job with torchrun, mpirun (Open MPI) or srun (Slurm)");
  }
  if (d.nranks < 1 || d.nranks > (1 << 24))
    return invalid_argument(d.source + ": world size " + std::to_string(d.nranks) +
                            " is out of range (at least 1)");
  if (d.rank < 0 || d.rank >= d.nranks)
    return invalid_argument(d.source + ": rank " + std::to_string(d.rank) +
                            " is out of range for a world of " + std::to_string(d.nranks));
  if (d.local_rank < -1 || d.local_rank >= d.nranks)
    return invalid_argument(d.source + ": local rank " + std::to_string(d.local_rank) +
                            " is out of range");

  LaunchInfo info;
  info.rank = static_cast<int>(d.rank);
  info.nranks = static_cast<int>(d.nranks);
  info.local_rank = static_cast<int>(d.local_rank);
  info.source = d.source;
  CIUIC_RETURN_IF_ERROR(resolve_root(d, &info.id.root));
  if (kSecret.is_set() && !kSecret.get().empty()) {
    CIUIC_RETURN_IF_ERROR(parse_secret(kSecret.get(), &info.id.secret));
    info.have_secret = true;
  } else {
    // Every rank sees the same launcher identity and root, so they derive the same key.
    info.id.secret = secret_from_job_id(d.job_id + "|" + info.id.root.to_string() + "|" +
                                        std::to_string(d.nranks));
    info.have_secret = false;
  }
  *out = std::move(info);
  return Status::Ok();
}

}  // namespace ciuic::core
