// The ibverbs transport's pure logic, without a device: HCA selection, GID choice, wire
// records under hostile input, FIFO/sequence bookkeeping, completion statuses in words.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "transports/ibverbs/ib_errors.h"
#include "transports/ibverbs/ib_fifo.h"
#include "transports/ibverbs/ib_select.h"
#include "transports/ibverbs/ib_wire.h"
#include "transports/ibverbs/verbs_api.h"

namespace ciuic::transport::ib {
namespace {

// ---- CIUIC_IB_HCA ----

// Parses `text` as CIUIC_IB_HCA and checks which (device, port) it takes.
struct Port {
  const char* device;
  int port;
  bool taken;
};
void expect_spec(const char* text, std::initializer_list<Port> ports) {
  HcaSpec spec;
  ASSERT_TRUE(parse_hca_spec(text, &spec).ok()) << text;
  for (const Port& p : ports)
    EXPECT_EQ(spec.matches(p.device, p.port), p.taken)
        << "CIUIC_IB_HCA=" << text << " on " << p.device << ":" << p.port;
}

TEST(IbHcaSpec, PlainNameIsExactNotPrefix) {
  expect_spec("mlx5_1", {{"mlx5_1", 1, true}, {"mlx5_10", 1, false}, {"mlx5_", 1, false}});
}

TEST(IbHcaSpec, ListWithPortsAndPrefix) {
  expect_spec("mlx5_0:1,mlx5_1,bnxt_*", {{"mlx5_0", 1, true},
                                         {"mlx5_0", 2, false},
                                         {"mlx5_1", 2, true},
                                         {"bnxt_re0", 1, true},
                                         {"mlx5_2", 1, false}});
}

TEST(IbHcaSpec, ExcludeAndExact) {
  expect_spec("^=mlx5_1", {{"mlx5_1", 1, false}, {"mlx5_10", 1, true}});
  expect_spec("=rxe0:1", {{"rxe0", 1, true}, {"rxe0", 2, false}});
}

TEST(IbHcaSpec, EmptyMatchesAllAndBadPortsAreRefused) {
  expect_spec("", {{"anything", 3, true}});
  HcaSpec spec;
  for (const char* bad : {"mlx5_0:", "mlx5_0:x", "mlx5_0:0", "mlx5_0:256", ":1"}) {
    Status s = parse_hca_spec(bad, &spec);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("CIUIC_IB_HCA"), std::string::npos) << s.message();
  }
}

// ---- GID choice ----

GidEntry gid(int index, const char* text, const char* type, const char* netdev = "eth0") {
  GidEntry e;
  e.index = index;
  EXPECT_TRUE(parse_gid_text(text, &e.gid)) << text;
  e.type = type;
  e.netdev = netdev;
  return e;
}

uint32_t ipv4(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a.s_addr;
}

// A RoCE port as rxe or mlx5 show it: link-local v1/v2, then one address per family.
std::vector<GidEntry> roce_table() {
  return {gid(0, "fe80:0000:0000:0000:5054:00ff:fe12:3456", "IB/RoCE v1"),
          gid(1, "fe80:0000:0000:0000:5054:00ff:fe12:3456", "RoCE v2"),
          gid(2, "0000:0000:0000:0000:0000:ffff:0a00:020f", "IB/RoCE v1"),
          gid(3, "0000:0000:0000:0000:0000:ffff:0a00:020f", "RoCE v2"),
          gid(4, "0000:0000:0000:0000:0000:ffff:c0a8:0105", "RoCE v2", "eth1"),
          gid(5, "2001:0db8:0000:0000:0000:0000:0000:0001", "RoCE v2")};
}

TEST(IbGid, PrefersRoceV2Ipv4MappedOfTheChosenAddress) {
  int index = -1;
  std::string why;
  ASSERT_TRUE(choose_gid(roce_table(), ipv4("192.168.1.5"), &index, &why).ok());
  EXPECT_EQ(index, 4);
  EXPECT_NE(why.find("chosen interface"), std::string::npos) << why;
  ASSERT_TRUE(choose_gid(roce_table(), ipv4("10.0.2.15"), &index, &why).ok());
  EXPECT_EQ(index, 3);
}

TEST(IbGid, WithoutAMatchTheLowestRoceV2Ipv4MappedWins) {
  int index = -1;
  std::string why;
  ASSERT_TRUE(choose_gid(roce_table(), std::nullopt, &index, &why).ok());
  EXPECT_EQ(index, 3);
  ASSERT_TRUE(choose_gid(roce_table(), ipv4("127.0.0.1"), &index, &why).ok());
  EXPECT_EQ(index, 3);
  EXPECT_NE(why.find("CIUIC_IB_GID_INDEX"), std::string::npos) << why;
}

TEST(IbGid, FallsBackToV2Ipv6ThenV1) {
  std::vector<GidEntry> t = {gid(0, "fe80:0000:0000:0000:5054:00ff:fe12:3456", "IB/RoCE v1"),
                             gid(1, "fe80:0000:0000:0000:5054:00ff:fe12:3456", "RoCE v2"),
                             gid(2, "2001:0db8:0000:0000:0000:0000:0000:0001", "RoCE v2")};
  int index = -1;
  std::string why;
  ASSERT_TRUE(choose_gid(t, std::nullopt, &index, &why).ok());
  EXPECT_EQ(index, 2);  // global before link-local
  t.pop_back();
  t.pop_back();
  ASSERT_TRUE(choose_gid(t, std::nullopt, &index, &why).ok());
  EXPECT_EQ(index, 0);
}

TEST(IbGid, EmptyOrZeroTableFails) {
  int index = -1;
  std::string why;
  EXPECT_FALSE(choose_gid({}, std::nullopt, &index, &why).ok());
  GidEntry zero;
  zero.index = 0;
  zero.type = "RoCE v2";
  EXPECT_FALSE(choose_gid({zero}, std::nullopt, &index, &why).ok());
}

TEST(IbGid, TextParsing) {
  std::array<uint8_t, 16> g{};
  EXPECT_TRUE(parse_gid_text("0000:0000:0000:0000:0000:ffff:0a00:020f\n", &g));
  EXPECT_TRUE(gid_is_ipv4_mapped(g));
  EXPECT_EQ(gid_to_string(g), "::ffff:10.0.2.15");
  for (const char* bad : {"", "0000:0000", "0000:0000:0000:0000:0000:ffff:0a00:02g0",
                          "0000-0000:0000:0000:0000:ffff:0a00:020f0"})
    EXPECT_FALSE(parse_gid_text(bad, &g)) << bad;
}

TEST(IbSpeed, FromPortCodes) {
  EXPECT_EQ(port_speed_mbps(32, 2), 100000);    // EDR 4x
  EXPECT_EQ(port_speed_mbps(64, 2), 200000);    // HDR 4x
  EXPECT_EQ(port_speed_mbps(1, 1), 2500);       // SDR 1x
  EXPECT_EQ(port_speed_mbps(128, 16), 200000);  // NDR 2x
  EXPECT_EQ(port_speed_mbps(3, 2), 0);
  EXPECT_EQ(port_speed_mbps(32, 3), 0);
}

// ---- wire ----

TEST(IbWire, HandleRoundTripAndHostileInput) {
  common::SocketHandle in;
  ASSERT_TRUE(net::parse_address("10.1.2.3:4567", 0, &in.address).ok());
  for (size_t i = 0; i < 16; ++i) in.token[i] = static_cast<uint8_t>(i * 7 + 1);
  ConnectHandle h;
  kHandle.encode(in, &h);
  common::SocketHandle out;
  ASSERT_TRUE(kHandle.decode(h, &out).ok());
  EXPECT_EQ(out.address.to_string(), "10.1.2.3:4567");
  EXPECT_EQ(out.token, in.token);

  // The layout: {u32 magic "CIBV", u16 version 2, u16 0, address, token}, the rest zero
  // (the NCCL plugin's handles are the same bytes).
  const std::string expected =
      "43494256020000000200d7110a01020300000000000000000000000001080f161d242b323940474e555c636a";
  std::string hex;
  char byte[3];
  for (size_t i = 0; i < kHandleBytes; ++i) {
    std::snprintf(byte, sizeof(byte), "%02x", h.bytes[i]);
    hex += byte;
  }
  EXPECT_EQ(hex, expected + std::string(2 * kHandleBytes - expected.size(), '0'));

  ConnectHandle bad = h;
  bad.bytes[0] ^= 1;
  Status s = kHandle.decode(bad, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not an ibverbs"), std::string::npos);
  bad = h;
  bad.bytes[4] = 9;
  EXPECT_NE(kHandle.decode(bad, &out).message().find("version"), std::string::npos);
  // A handle of the builds before the size rode in the IMM (version 1) is refused, saying
  // both versions: their receivers would take a sized IMM for a sequence number.
  bad = h;
  bad.bytes[4] = 1;
  s = kHandle.decode(bad, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("wire version 1, this build speaks 2"), std::string::npos)
      << s.message();
  std::mt19937 rng(5);
  for (int round = 0; round < 2000; ++round) {  // random bytes never crash the decoder
    for (uint8_t& b : bad.bytes) b = static_cast<uint8_t>(rng());
    if (round % 2 == 0) std::memcpy(bad.bytes, h.bytes, 8);
    (void)kHandle.decode(bad, &out);
  }
}

ConnRecord sample_record() {
  ConnRecord r;
  r.qp_count = 3;
  r.link_layer = 2;
  r.mtu = 3;
  r.gid_index = 3;
  r.lid = 0x1234;
  r.psn = 0xabcdef;
  for (int i = 0; i < 16; ++i) r.gid[i] = static_cast<uint8_t>(0xf0 + i);
  r.qpn[0] = 17;
  r.qpn[1] = 18;
  r.qpn[2] = 0xffffff;
  r.fifo_addr = 0x00007f0012345000ull;
  r.fifo_rkey = 0xdeadbeef;
  r.sizes_addr = 0x00007f0099999040ull;
  r.sizes_rkey = 0x01020304;
  return r;
}

TEST(IbWire, RecordRoundTrip) {
  ConnRecord in = sample_record();
  uint8_t bytes[kConnRecordBytes];
  encode_record(in, bytes);
  ConnRecord out;
  ASSERT_TRUE(decode_record(bytes, sizeof(bytes), &out).ok());
  EXPECT_EQ(out.qp_count, 3);
  EXPECT_EQ(out.mtu, 3);
  EXPECT_EQ(out.lid, 0x1234);
  EXPECT_EQ(out.psn, 0xabcdefu);
  EXPECT_EQ(std::memcmp(out.gid, in.gid, 16), 0);
  EXPECT_EQ(out.qpn[2], 0xffffffu);
  EXPECT_EQ(out.qpn[3], 0u);
  EXPECT_EQ(out.fifo_addr, in.fifo_addr);
  EXPECT_EQ(out.fifo_rkey, in.fifo_rkey);
  EXPECT_EQ(out.sizes_addr, in.sizes_addr);
  EXPECT_EQ(out.sizes_rkey, in.sizes_rkey);
}

TEST(IbWire, RecordRefusesWhatIsOutOfRange) {
  uint8_t good[kConnRecordBytes];
  encode_record(sample_record(), good);
  ConnRecord out;
  EXPECT_FALSE(decode_record(good, kConnRecordBytes - 1, &out).ok());
  EXPECT_FALSE(decode_record(good, 0, &out).ok());
  auto broken = [&](int offset, uint8_t value) {
    uint8_t b[kConnRecordBytes];
    std::memcpy(b, good, sizeof(b));
    b[offset] = value;
    return decode_record(b, sizeof(b), &out);
  };
  EXPECT_FALSE(broken(0, 0).ok());  // no QPs
  EXPECT_FALSE(broken(0, kMaxQps + 1).ok());
  EXPECT_FALSE(broken(2, 0).ok());  // MTU code
  EXPECT_FALSE(broken(2, 6).ok());
  EXPECT_FALSE(broken(1, 7).ok());           // link layer
  EXPECT_FALSE(broken(11, 1).ok());          // PSN beyond 24 bits
  EXPECT_FALSE(broken(28, 0).ok());          // QPN 0 for a QP in use
  EXPECT_FALSE(broken(28 + 4 * 5, 1).ok());  // a QPN beyond qp_count
  EXPECT_FALSE(broken(92, 0).ok());          // marker
  std::mt19937 rng(11);
  for (int round = 0; round < 5000; ++round) {
    uint8_t b[kConnRecordBytes];
    for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
    if (round % 2) std::memcpy(b + 92, good + 92, 4);
    Status s = decode_record(b, sizeof(b), &out);
    if (s.ok()) {  // whatever passes is within the ranges the QP setup relies on
      EXPECT_GE(out.qp_count, 1);
      EXPECT_LE(out.qp_count, kMaxQps);
      EXPECT_LE(out.psn, 0xffffffu);
    }
  }
}

TEST(IbWire, SideFrames) {
  uint8_t h[kSideHeaderBytes];
  SideFrame type;
  uint32_t length = 0;
  encode_side_header(SideFrame::kAbort, 42, h);
  ASSERT_TRUE(decode_side_header(h, &type, &length).ok());
  EXPECT_EQ(type, SideFrame::kAbort);
  EXPECT_EQ(length, 42u);
  encode_side_header(SideFrame::kReady, 0, h);
  ASSERT_TRUE(decode_side_header(h, &type, &length).ok());
  EXPECT_EQ(type, SideFrame::kReady);
  encode_side_header(SideFrame::kAbort, kMaxAbortReason + 1, h);
  EXPECT_FALSE(decode_side_header(h, &type, &length).ok());
  encode_side_header(SideFrame::kReady, 1, h);
  EXPECT_FALSE(decode_side_header(h, &type, &length).ok());
  uint8_t garbage[kSideHeaderBytes] = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
  EXPECT_FALSE(decode_side_header(garbage, &type, &length).ok());
}

// ---- FIFO bookkeeping ----

void announce(FifoEntry* slot, uint64_t seq, std::initializer_list<int> tags) {
  uint16_t i = 0;
  for (int tag : tags) {
    slot[i] = FifoEntry{0x1000u * (i + 1),
                        100u + i,
                        7,
                        tag,
                        static_cast<uint32_t>(seq),
                        static_cast<uint16_t>(tags.size()),
                        i};
    ++i;
  }
}

TEST(IbFifo, SendsWaitForTheirGroupAndMatchByTag) {
  SendFifo fifo;
  EXPECT_FALSE(fifo.group_ready());
  FifoEntry slots[kFifoSlots][kMaxGroupedRecvs] = {};
  announce(slots[0], 0, {5, 9, 5});
  ASSERT_TRUE(fifo.fifo_arrived(0).ok());
  ASSERT_TRUE(fifo.group_ready());
  ASSERT_TRUE(fifo.load_group(slots[0]).ok());
  EXPECT_EQ(fifo.match(4), -1);
  EXPECT_EQ(fifo.match(9), 1);
  EXPECT_FALSE(fifo.consume(1));
  EXPECT_EQ(fifo.match(5), 0);
  EXPECT_FALSE(fifo.consume(0));
  EXPECT_EQ(fifo.unused(), 1);
  EXPECT_EQ(fifo.tags_left(), "5");
  EXPECT_EQ(fifo.match(5), 2);  // the same tag twice: each buffer once
  EXPECT_TRUE(fifo.consume(2));
  EXPECT_EQ(fifo.group_seq(), 1u);
  EXPECT_FALSE(fifo.group_ready());  // receive 1 not announced yet
}

TEST(IbFifo, SequenceWrapsOverTheSlotsAndOrderIsChecked) {
  SendFifo fifo;
  FifoEntry slots[kFifoSlots][kMaxGroupedRecvs] = {};
  for (uint64_t seq = 0; seq < 5 * kFifoSlots; ++seq) {
    announce(slots[seq % kFifoSlots], seq, {static_cast<int>(seq)});
    ASSERT_TRUE(fifo.fifo_arrived(static_cast<uint32_t>(seq)).ok());
    ASSERT_TRUE(fifo.load_group(slots[fifo.group_seq() % kFifoSlots]).ok());
    ASSERT_EQ(fifo.match(static_cast<int>(seq)), 0);
    ASSERT_TRUE(fifo.consume(0));
  }
  EXPECT_FALSE(fifo.fifo_arrived(12345).ok());  // out of step
}

TEST(IbFifo, InconsistentEntriesAreErrors) {
  FifoEntry slot[kMaxGroupedRecvs] = {};
  SendFifo fifo;
  ASSERT_TRUE(fifo.fifo_arrived(0).ok());
  EXPECT_FALSE(fifo.load_group(slot).ok());  // count 0
  announce(slot, 0, {1, 2});
  slot[1].index = 0;
  EXPECT_FALSE(fifo.load_group(slot).ok());
  announce(slot, 1, {1, 2});  // stale sequence
  EXPECT_FALSE(fifo.load_group(slot).ok());
  announce(slot, 0, {1, 2});
  slot[0].count = kMaxGroupedRecvs + 1;
  EXPECT_FALSE(fifo.load_group(slot).ok());
  announce(slot, 0, {1, 2});
  EXPECT_TRUE(fifo.load_group(slot).ok());
}

TEST(IbImmCounters, CompleteOnlyWhenEveryQpDelivered) {
  ImmCounters c(3);
  EXPECT_FALSE(c.complete(0));
  ASSERT_TRUE(c.arrived(0, 0).ok());
  ASSERT_TRUE(c.arrived(2, 0).ok());
  EXPECT_FALSE(c.complete(0));
  ASSERT_TRUE(c.arrived(0, 1).ok());
  EXPECT_FALSE(c.complete(0));
  ASSERT_TRUE(c.arrived(1, 0).ok());
  EXPECT_TRUE(c.complete(0));
  EXPECT_FALSE(c.complete(1));
  EXPECT_FALSE(c.arrived(1, 5).ok());  // out of order on a QP
  EXPECT_FALSE(c.arrived(3, 0).ok());  // no such QP
}

// The closing IMM's two forms (ib_fifo.h): the sequence alone, or for a group of one
// buffer flag | 7 sequence bits | 24-bit size.
TEST(IbImmCounters, SizeRidesInTheImmediateWhenItFits) {
  uint32_t imm = 0;
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{4096}, uint64_t{1} << 20, kMaxImmSize}) {
    ASSERT_TRUE(close_imm_with_size(300, size, &imm)) << size;
    EXPECT_TRUE(imm & kImmSizeFlag);
    ImmCounters c(1);
    for (uint32_t seq = 0; seq < 300; ++seq) ASSERT_TRUE(c.arrived(0, close_imm(seq)).ok());
    ClosedGroup closed;
    ASSERT_TRUE(c.arrived(0, imm, &closed).ok()) << size;
    EXPECT_EQ(closed.seq, 300u);
    EXPECT_TRUE(closed.has_size);
    EXPECT_EQ(closed.size, size);
    EXPECT_TRUE(c.complete(300));
  }
  // Too large for 24 bits: the sender falls back to the sizes record.
  EXPECT_FALSE(close_imm_with_size(0, kMaxImmSize + 1, &imm));
  EXPECT_FALSE(close_imm_with_size(0, uint64_t{1} << 40, &imm));
  // The plain form never sets the flag, however long the channel lives.
  EXPECT_EQ(close_imm(5), 5u);
  EXPECT_EQ(close_imm((uint64_t{1} << 31) + 5), 5u);
  EXPECT_EQ(close_imm((uint64_t{1} << 32) + 7), 7u);
  EXPECT_FALSE(close_imm(0xffffffffu) & kImmSizeFlag);
}

TEST(IbImmCounters, BothFormsInterleavedAcrossTheSequenceWrap) {
  ImmCounters c(2);
  std::mt19937 rng(11);
  for (uint64_t seq = 0; seq < 1000; ++seq) {  // the 7 sequence bits wrap several times
    const uint64_t size = rng() % (kMaxImmSize + 1);
    uint32_t imm = close_imm(seq);
    const bool sized = rng() % 2 == 0;
    if (sized) {
      ASSERT_TRUE(close_imm_with_size(seq, size, &imm));
    }
    ClosedGroup closed;
    ASSERT_TRUE(c.arrived(0, imm, &closed).ok()) << seq;
    EXPECT_EQ(closed.seq, seq);
    EXPECT_EQ(closed.has_size, sized);
    if (sized) {
      EXPECT_EQ(closed.size, size);
    }
    EXPECT_FALSE(c.complete(seq));  // QP 1 has not closed it yet
    ASSERT_TRUE(c.arrived(1, close_imm(seq)).ok());
    EXPECT_TRUE(c.complete(seq));
  }
}

TEST(IbImmCounters, SizedImmediateOutOfStepIsAnError) {
  ImmCounters c(1);
  ASSERT_TRUE(c.arrived(0, close_imm(0)).ok());
  uint32_t imm = 0;
  ASSERT_TRUE(close_imm_with_size(2, 64, &imm));  // sequence 2 where 1 is due
  Status s = c.arrived(0, imm);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("out of step"), std::string::npos) << s.message();
  ASSERT_TRUE(close_imm_with_size(1 + 128, 64, &imm));  // same low 7 bits as 1: accepted
  EXPECT_TRUE(c.arrived(0, imm).ok());
  EXPECT_EQ(c.count(0), 2u);
}

// ---- auto ----

// auto takes ibverbs exactly where it can be created; elsewhere tcp, saying why not.
TEST(IbAuto, PrefersIbverbsOnlyWhereItWorksAndSaysWhyNot) {
  std::unique_ptr<Transport> ib;
  Status direct = create_transport("ibverbs", TransportOptions{}, &ib);
  std::unique_ptr<Transport> chosen;
  std::string why;
  ASSERT_TRUE(create_transport("auto", TransportOptions{}, &chosen, &why).ok()) << why;
  if (direct.ok()) {
    EXPECT_STREQ(chosen->name(), "ibverbs") << why;
  } else {
    EXPECT_STREQ(chosen->name(), "tcp") << why;
    EXPECT_NE(why.find("ibverbs unavailable"), std::string::npos) << why;
    EXPECT_FALSE(direct.message().empty());
    EXPECT_NE(direct.message().find("transport ibverbs"), std::string::npos) << direct.message();
  }
}

// ---- statuses ----

TEST(IbErrors, StatusesInWordsWithHints) {
#if CIUIC_HAVE_VERBS_H
  std::string retry = describe_wc_status(IBV_WC_RETRY_EXC_ERR);
  EXPECT_NE(retry.find("retry exceeded"), std::string::npos);
  EXPECT_NE(retry.find("IBV_WC_RETRY_EXC_ERR"), std::string::npos);
  EXPECT_NE(retry.find("GID index"), std::string::npos);
  std::string access = describe_wc_status(IBV_WC_REM_ACCESS_ERR);
  EXPECT_NE(access.find("deregistered or too small"), std::string::npos);
  EXPECT_EQ(wc_status_name(IBV_WC_WR_FLUSH_ERR), "IBV_WC_WR_FLUSH_ERR");
#endif
  EXPECT_NE(describe_wc_status(999).find("unknown completion status 999"), std::string::npos);
  EXPECT_EQ(wc_status_name(999), "status 999");
}

}  // namespace
}  // namespace ciuic::transport::ib
