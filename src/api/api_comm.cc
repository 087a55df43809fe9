// C API: library information, communicator lifecycle, errors.
#include <map>

#include "api/api_internal.h"
#include "base/log.h"
#include "base/net.h"
#include "core/bootstrap.h"
#include "reduce/reduce.h"

namespace ciuic::api {
namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<ciuic_comm*, std::shared_ptr<ciuic_comm>>& registry() {
  static auto* r = new std::map<ciuic_comm*, std::shared_ptr<ciuic_comm>>();
  return *r;
}
thread_local std::string thread_last_error;

}  // namespace

void register_handle(const std::shared_ptr<ciuic_comm>& handle) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[handle.get()] = handle;
}

std::shared_ptr<ciuic_comm> unregister_handle(ciuic_comm* handle) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(handle);
  if (it == registry().end()) return nullptr;
  auto out = it->second;
  registry().erase(it);
  return out;
}

Status lookup(ciuic_comm* handle, std::shared_ptr<ciuic_comm>* out) {
  if (handle == nullptr) return invalid_argument("the communicator is NULL");
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(handle);
  if (it == registry().end())
    return invalid_argument("not a live communicator (already destroyed, or never created)");
  *out = it->second;
  return Status::Ok();
}

ciuic_result_t record(ciuic_comm* handle, const Status& status) {
  std::shared_ptr<ciuic_comm> h;
  if (handle != nullptr && lookup(handle, &h).ok()) return record_for(h, status);
  if (!status.ok()) thread_last_error = status.message();
  return status.code();
}

const std::string& thread_error() { return thread_last_error; }

ciuic_result_t record_for(const std::shared_ptr<ciuic_comm>& handle, const Status& status) {
  if (!status.ok()) {
    std::lock_guard<std::mutex> lock(handle->error_mutex);
    handle->last_error = status.message();
  }
  return status.code();
}

namespace {

Status make_comm(const core::UniqueId& id, int nranks, int rank, ciuic_comm_t* comm) {
  std::unique_ptr<core::Communicator> impl;
  CIUIC_RETURN_IF_ERROR(core::Communicator::create(id, "world", rank, nranks, &impl));
  auto handle = std::make_shared<ciuic_comm>();
  handle->impl = std::move(impl);
  register_handle(handle);
  *comm = handle.get();
  return Status::Ok();
}

Status init_rank(ciuic_comm_t* comm, int nranks, const ciuic_unique_id_t& unique_id, int rank) {
  if (comm == nullptr) return invalid_argument("comm (the output pointer) is NULL");
  *comm = nullptr;
  if (nranks < 1) return invalid_argument("nranks must be at least 1, got " + std::to_string(nranks));
  if (rank < 0 || rank >= nranks)
    return invalid_argument("rank " + std::to_string(rank) + " is outside [0, " +
                            std::to_string(nranks) + ")");
  core::UniqueId id;
  CIUIC_RETURN_IF_ERROR(core::UniqueId::decode(unique_id, &id));
  return make_comm(id, nranks, rank, comm);
}

Status init_env(ciuic_comm_t* comm) {
  if (comm == nullptr) return invalid_argument("comm (the output pointer) is NULL");
  *comm = nullptr;
  core::LaunchInfo info;
  CIUIC_RETURN_IF_ERROR(core::read_launch_env(&info));
  if (!info.have_secret) {
    CIUIC_LOG_WARN(log::kBoot,
                   "no CIUIC_SECRET in the environment (launched by %s): bootstrap connections "
                   "are authenticated by the job's identity only; set CIUIC_SECRET to 32 hex "
                   "characters shared by all ranks to keep strangers out",
                   info.source.c_str());
  }
  CIUIC_RETURN_IF_ERROR(core::serve_root_if_rank0(info));
  CIUIC_LOG_INFO(log::kBoot, "rank %d of %d from %s, root %s", info.rank, info.nranks,
                 info.source.c_str(), info.id.root.to_string().c_str());
  return make_comm(info.id, info.nranks, info.rank, comm);
}

Status get_unique_id(ciuic_unique_id_t* out) {
  if (out == nullptr) return invalid_argument("unique_id is NULL");
  core::UniqueId id;
  std::string why;
  CIUIC_RETURN_IF_ERROR(net::choose_local_address(&id.root, &why));
  net::random_bytes(id.secret.data(), id.secret.size());
  std::shared_ptr<core::StoreServer> server;
  CIUIC_RETURN_IF_ERROR(core::StoreServer::start(id.root, id.secret, &server));
  id.root = server->address();
  core::adopt_server(server);
  CIUIC_LOG_INFO(log::kBoot, "bootstrap root serving at %s (%s)", id.root.to_string().c_str(),
                 why.c_str());
  id.encode(out);
  return Status::Ok();
}

}  // namespace
}  // namespace ciuic::api

using namespace ciuic;

extern "C" {

int ciuic_get_version(void) { return CIUIC_VERSION; }

ciuic_result_t ciuic_get_unique_id(ciuic_unique_id_t* unique_id) {
  return api::record(nullptr, api::get_unique_id(unique_id));
}

ciuic_result_t ciuic_comm_init_rank(ciuic_comm_t* comm, int nranks, ciuic_unique_id_t unique_id,
                                    int rank) {
  return api::record(nullptr, api::init_rank(comm, nranks, unique_id, rank));
}

ciuic_result_t ciuic_comm_init_env(ciuic_comm_t* comm) {
  return api::record(nullptr, api::init_env(comm));
}

ciuic_result_t ciuic_comm_split(ciuic_comm_t comm, int color, int key, ciuic_comm_t* newcomm) {
  std::shared_ptr<ciuic_comm> h;
  Status s = api::lookup(comm, &h);
  if (!s.ok()) return api::record(nullptr, s);
  if (newcomm == nullptr) return api::record_for(h, invalid_argument("newcomm is NULL"));
  *newcomm = nullptr;
  std::unique_ptr<core::Communicator> child;
  s = h->impl->split(color < 0 ? CIUIC_SPLIT_NOCOLOR : color, key, &child);
  if (!s.ok()) return api::record_for(h, s);
  if (!child) return CIUIC_SUCCESS;
  auto handle = std::make_shared<ciuic_comm>();
  handle->impl = std::move(child);
  api::register_handle(handle);
  *newcomm = handle.get();
  return CIUIC_SUCCESS;
}

ciuic_result_t ciuic_comm_destroy(ciuic_comm_t comm) {
  std::shared_ptr<ciuic_comm> h = api::unregister_handle(comm);
  if (!h) {
    return api::record(nullptr, invalid_argument(comm == nullptr ? "the communicator is NULL"
                                                                 : "not a live communicator "
                                                                   "(already destroyed?)"));
  }
  h->impl.reset();  // requests still held keep the communicator until they are freed
  return CIUIC_SUCCESS;
}

ciuic_result_t ciuic_comm_abort(ciuic_comm_t comm) {
  std::shared_ptr<ciuic_comm> h;
  Status s = api::lookup(comm, &h);
  if (!s.ok()) return api::record(nullptr, s);
  std::shared_ptr<core::Communicator> impl = h->impl;
  h->cuda.abort();  // an operation waiting for its CUDA stream gives up too
  if (impl) impl->abort();
  return CIUIC_SUCCESS;
}

ciuic_result_t ciuic_comm_rank(ciuic_comm_t comm, int* rank) {
  std::shared_ptr<ciuic_comm> h;
  Status s = api::lookup(comm, &h);
  if (!s.ok()) return api::record(nullptr, s);
  if (rank == nullptr) return api::record_for(h, invalid_argument("rank (output) is NULL"));
  *rank = h->impl->rank();
  return CIUIC_SUCCESS;
}

ciuic_result_t ciuic_comm_size(ciuic_comm_t comm, int* size) {
  std::shared_ptr<ciuic_comm> h;
  Status s = api::lookup(comm, &h);
  if (!s.ok()) return api::record(nullptr, s);
  if (size == nullptr) return api::record_for(h, invalid_argument("size (output) is NULL"));
  *size = h->impl->nranks();
  return CIUIC_SUCCESS;
}

ciuic_result_t ciuic_comm_set_timeout(ciuic_comm_t comm, int64_t timeout_ms) {
  std::shared_ptr<ciuic_comm> h;
  Status s = api::lookup(comm, &h);
  if (!s.ok()) return api::record(nullptr, s);
  return api::record_for(h, h->impl->set_timeout_ms(timeout_ms).prefix("ciuic_comm_set_timeout"));
}

ciuic_result_t ciuic_comm_get_timeout(ciuic_comm_t comm, int64_t* timeout_ms) {
  std::shared_ptr<ciuic_comm> h;
  Status s = api::lookup(comm, &h);
  if (!s.ok()) return api::record(nullptr, s);
  if (timeout_ms == nullptr) return api::record_for(h, invalid_argument("timeout_ms (output) is NULL"));
  *timeout_ms = h->impl->timeout_ms();
  return CIUIC_SUCCESS;
}

const char* ciuic_comm_get_last_error(ciuic_comm_t comm) {
  std::shared_ptr<ciuic_comm> h;
  if (comm != nullptr && api::lookup(comm, &h).ok()) {
    std::lock_guard<std::mutex> lock(h->error_mutex);
    return h->last_error.c_str();  // the handle outlives this call: the registry holds it
  }
  return api::thread_error().c_str();
}

}  // extern "C"
