#include "transports/ibverbs/ib_select.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace ciuic::transport::ib {

bool HcaSpec::matches(std::string_view device, int port) const {
  if (items.empty()) return true;
  bool listed = false;
  for (const Item& item : items) {
    bool name_ok = item.prefix ? device.substr(0, item.name.size()) == item.name
                               : device == item.name;
    if (name_ok && (item.port < 0 || item.port == port)) {
      listed = true;
      break;
    }
  }
  return exclude ? !listed : listed;
}

Status parse_hca_spec(std::string_view text, HcaSpec* out) {
  *out = HcaSpec{};
  if (!text.empty() && text[0] == '^') {
    out->exclude = true;
    text.remove_prefix(1);
  }
  if (!text.empty() && text[0] == '=') text.remove_prefix(1);  // names are exact anyway
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (item.empty()) continue;
    HcaSpec::Item parsed;
    size_t colon = item.find(':');
    if (colon != std::string_view::npos) {
      std::string_view port = item.substr(colon + 1);
      int value = 0;
      if (port.empty() || port.size() > 3) value = -1;
      for (char c : port) value = (c >= '0' && c <= '9' && value >= 0) ? value * 10 + (c - '0') : -1;
      if (value < 1 || value > 255)
        return invalid_argument("CIUIC_IB_HCA: '" + std::string(item) +
                                "' has no valid port number after ':' (expected 1..255)");
      parsed.port = value;
      item = item.substr(0, colon);
    }
    if (!item.empty() && item.back() == '*') {
      parsed.prefix = true;
      item.remove_suffix(1);
    }
    if (item.empty() && !parsed.prefix)
      return invalid_argument("CIUIC_IB_HCA: an entry has no device name");
    parsed.name = std::string(item);
    out->items.push_back(std::move(parsed));
  }
  return Status::Ok();
}

bool parse_gid_text(std::string_view text, std::array<uint8_t, 16>* out) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.size() != 39) return false;
  for (int group = 0; group < 8; ++group) {
    uint16_t value = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text[group * 5 + i];
      int digit = (c >= '0' && c <= '9')   ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                           : -1;
      if (digit < 0) return false;
      value = static_cast<uint16_t>(value << 4 | digit);
    }
    if (group < 7 && text[group * 5 + 4] != ':') return false;
    (*out)[group * 2] = static_cast<uint8_t>(value >> 8);
    (*out)[group * 2 + 1] = static_cast<uint8_t>(value);
  }
  return true;
}

bool gid_is_zero(const std::array<uint8_t, 16>& gid) {
  for (uint8_t b : gid)
    if (b != 0) return false;
  return true;
}

bool gid_is_ipv4_mapped(const std::array<uint8_t, 16>& gid) {
  for (int i = 0; i < 10; ++i)
    if (gid[i] != 0) return false;
  return gid[10] == 0xff && gid[11] == 0xff;
}

std::string gid_to_string(const std::array<uint8_t, 16>& gid) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, gid.data(), text, sizeof(text));
  return text;
}

Status choose_gid(const std::vector<GidEntry>& table, std::optional<uint32_t> preferred_ipv4,
                  int* index, std::string* why) {
  int best = -1;
  int best_score = -1;
  for (size_t i = 0; i < table.size(); ++i) {
    const GidEntry& e = table[i];
    if (gid_is_zero(e.gid)) continue;
    bool v2 = e.type.find("v2") != std::string::npos;
    bool mapped = gid_is_ipv4_mapped(e.gid);
    bool link_local = e.gid[0] == 0xfe && (e.gid[1] & 0xc0) == 0x80;
    bool preferred = false;
    if (mapped && preferred_ipv4) {
      uint32_t address = 0;
      std::memcpy(&address, e.gid.data() + 12, 4);
      preferred = address == *preferred_ipv4;
    }
    int score = (preferred ? 8 : 0) + (v2 ? 4 : 0) + (mapped ? 2 : 0) + (link_local ? 0 : 1);
    if (score > best_score || (score == best_score && e.index < table[best].index)) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  if (best < 0)
    return unsupported("the port's GID table has no usable entry (is an IP address set on "
                       "its network interface?)");
  const GidEntry& e = table[best];
  *index = e.index;
  if (why != nullptr) {
    *why = "GID index " + std::to_string(e.index) + " (" + gid_to_string(e.gid) + ", " +
           (e.type.empty() ? "type unknown" : e.type) +
           (e.netdev.empty() ? "" : ", " + e.netdev) + ")";
    if (best_score >= 8)
      *why += ": holds the address of the chosen interface";
    else if (preferred_ipv4)
      *why += ": no GID holds the chosen interface's address; set CIUIC_IB_GID_INDEX to override";
  }
  return Status::Ok();
}

int port_speed_mbps(uint32_t active_speed, uint8_t active_width) {
  int lane = 0;  // Mb/s per lane
  switch (active_speed) {
    case 1: lane = 2500; break;     // SDR
    case 2: lane = 5000; break;     // DDR
    case 4: lane = 10000; break;    // QDR
    case 8: lane = 10000; break;    // FDR10
    case 16: lane = 14000; break;   // FDR
    case 32: lane = 25000; break;   // EDR
    case 64: lane = 50000; break;   // HDR
    case 128: lane = 100000; break; // NDR
    case 256: lane = 200000; break; // XDR
    default: return 0;
  }
  int lanes = 0;
  switch (active_width) {
    case 1: lanes = 1; break;
    case 2: lanes = 4; break;
    case 4: lanes = 8; break;
    case 8: lanes = 12; break;
    case 16: lanes = 2; break;
    default: return 0;
  }
  return lane * lanes;
}

}  // namespace ciuic::transport::ib
