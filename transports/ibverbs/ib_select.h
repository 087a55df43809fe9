// Which RDMA devices and ports to use, and which GID of a RoCE port: pure logic over what
// discovery read, so that it is tested without a device.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ciuic::transport::ib {

// CIUIC_IB_HCA, NCCL's syntax: "mlx5_0:1,mlx5_1" lists devices (optionally one port each);
// a leading '^' excludes the listed ones instead; a leading '=' (after '^' if both) makes
// names exact. Unlike NCCL, a plain name is exact too: "mlx5_1" never matches "mlx5_10".
// A name ending in '*' is a prefix ("mlx5_*"). Empty: every device.
struct HcaSpec {
  struct Item {
    std::string name;
    bool prefix = false;
    int port = -1;  // -1: any port
  };
  bool exclude = false;
  std::vector<Item> items;

  bool matches(std::string_view device, int port) const;
};
Status parse_hca_spec(std::string_view text, HcaSpec* out);

// One entry of a port's GID table as sysfs shows it.
struct GidEntry {
  int index = 0;
  std::array<uint8_t, 16> gid{};
  std::string type;    // "RoCE v2", "IB/RoCE v1"
  std::string netdev;  // "eth0"; may be empty
};

// Parses "fe80:0000:0000:0000:0202:c9ff:fe00:0001" (sysfs gids/<i> format).
bool parse_gid_text(std::string_view text, std::array<uint8_t, 16>* out);
bool gid_is_zero(const std::array<uint8_t, 16>& gid);
bool gid_is_ipv4_mapped(const std::array<uint8_t, 16>& gid);
std::string gid_to_string(const std::array<uint8_t, 16>& gid);

// Chooses the GID index of a RoCE port: RoCE v2 before v1, IPv4-mapped before IPv6,
// the GID holding `preferred_ipv4` (network byte order, the chosen interface's address)
// first of all, and global IPv6 before link-local; ties go to the lowest index.
// `why` says what was chosen. Fails when the table has no usable GID.
Status choose_gid(const std::vector<GidEntry>& table, std::optional<uint32_t> preferred_ipv4,
                  int* index, std::string* why);

// Link speed in Mb/s from ibv_port_attr's active_speed and
// active_width codes; 0 when either is unknown.
int port_speed_mbps(uint32_t active_speed, uint8_t active_width);

}  // namespace ciuic::transport::ib
