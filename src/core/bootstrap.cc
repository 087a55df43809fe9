// The unique id's byte layout and the process-wide table of store servers.
#include "core/bootstrap.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

namespace ciuic::core {
namespace {

// ciuic_unique_id_t layout: u32 magic, u16 version, u16 zero, packed root address (20
// bytes), secret (16 bytes); the rest is zero.
constexpr size_t kAddressOffset = 8;
constexpr size_t kSecretOffset = kAddressOffset + net::SocketAddress::kPackedBytes;
static_assert(kSecretOffset + sizeof(Key128) <= CIUIC_UNIQUE_ID_BYTES);

uint8_t* bytes_of(ciuic_unique_id_t* id) { return reinterpret_cast<uint8_t*>(id->internal); }
const uint8_t* bytes_of(const ciuic_unique_id_t& id) {
  return reinterpret_cast<const uint8_t*>(id.internal);
}

struct ServerTable {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<StoreServer>> by_address;
};

ServerTable& server_table() {
  // Never destroyed: a server thread may still be running during static teardown.
  static ServerTable* table = new ServerTable();
  return *table;
}

}  // namespace

void UniqueId::encode(ciuic_unique_id_t* out) const {
  uint8_t* p = bytes_of(out);
  std::memset(p, 0, CIUIC_UNIQUE_ID_BYTES);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(kBootstrapMagic >> (8 * i));
  p[4] = static_cast<uint8_t>(kBootstrapVersion);
  p[5] = static_cast<uint8_t>(kBootstrapVersion >> 8);
  root.pack(p + kAddressOffset);
  std::memcpy(p + kSecretOffset, secret.data(), secret.size());
}

Status UniqueId::decode(const ciuic_unique_id_t& in, UniqueId* out) {
  const uint8_t* p = bytes_of(in);
  uint32_t magic = 0;
  for (int i = 0; i < 4; ++i) magic |= static_cast<uint32_t>(p[i]) << (8 * i);
  if (magic != kBootstrapMagic) {
    char text[16];
    std::snprintf(text, sizeof(text), "0x%08x", magic);
    return invalid_argument(std::string("not a ciuic unique id (magic ") + text +
                            "): pass the bytes from ciuic_get_unique_id to every rank unchanged");
  }
  uint16_t version = static_cast<uint16_t>(p[4] | (p[5] << 8));
  if (version != kBootstrapVersion)
    return invalid_argument("unique id of bootstrap protocol version " + std::to_string(version) +
                            ", this library speaks " + std::to_string(kBootstrapVersion) +
                            ": every rank must run the same ciuic release");
  UniqueId id;
  Status s = net::SocketAddress::unpack(p + kAddressOffset, &id.root);
  if (!s.ok()) return s.prefix("unique id");
  std::memcpy(id.secret.data(), p + kSecretOffset, id.secret.size());
  *out = id;
  return Status::Ok();
}

void adopt_server(std::shared_ptr<StoreServer> server) {
  if (!server) return;
  ServerTable& table = server_table();
  std::lock_guard<std::mutex> lock(table.mutex);
  table.by_address[server->address().to_string()] = std::move(server);
}

std::shared_ptr<StoreServer> find_server(const net::SocketAddress& address) {
  ServerTable& table = server_table();
  std::lock_guard<std::mutex> lock(table.mutex);
  auto it = table.by_address.find(address.to_string());
  return it == table.by_address.end() ? nullptr : it->second;
}

void forget_server(const net::SocketAddress& address) {
  std::shared_ptr<StoreServer> last_reference;  // destroyed outside the lock: it joins a thread
  ServerTable& table = server_table();
  std::lock_guard<std::mutex> lock(table.mutex);
  auto it = table.by_address.find(address.to_string());
  if (it == table.by_address.end()) return;
  last_reference = std::move(it->second);
  table.by_address.erase(it);
}

}  // namespace ciuic::core
