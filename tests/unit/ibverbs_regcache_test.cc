// The registration cache against a fake backend that records what is registered, so
// reuse, reference counts and eviction are checked without a device.
#include <gtest/gtest.h>

#include <map>

#include "transports/ibverbs/ib_regcache.h"

namespace ciuic::transport::ib {
namespace {

struct FakeBackend {
  std::map<uintptr_t, size_t> live;  // start -> length of registrations that exist
  int regs = 0;
  int deregs = 0;
  bool refuse = false;

  RegistrationCache::Backend make() {
    RegistrationCache::Backend b;
    b.reg = [this](uintptr_t start, size_t length, int, RegistrationCache::Entry* e) {
      if (refuse) return system_error("pinned memory limit");
      EXPECT_EQ(start % 4096, 0u);
      EXPECT_EQ(length % 4096, 0u);
      live[start] += length;
      e->lkey = static_cast<uint32_t>(++regs);
      e->rkey = e->lkey + 1000;
      return Status::Ok();
    };
    b.dereg = [this](RegistrationCache::Entry* e) {
      ++deregs;
      live.erase(e->start);
    };
    return b;
  }
};

const void* at(uintptr_t address) { return reinterpret_cast<const void*>(address); }

TEST(IbRegCache, EnclosingRegistrationIsReusedAndRefcounted) {
  FakeBackend fake;
  RegistrationCache cache(fake.make(), 0);
  RegistrationCache::Entry* big = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x100010), 3 * 4096, 1, &big).ok());
  EXPECT_EQ(big->start, 0x100000u);          // rounded out to pages
  EXPECT_EQ(big->length, 4u * 4096);
  RegistrationCache::Entry* inner = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x101000), 100, 1, &inner).ok());
  EXPECT_EQ(inner, big);
  EXPECT_EQ(fake.regs, 1);
  RegistrationCache::Entry* other_kind = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x101000), 100, 2, &other_kind).ok());
  EXPECT_NE(other_kind, big);  // CUDA and host never share
  RegistrationCache::Entry* beyond = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x103f00), 0x200, 1, &beyond).ok());
  EXPECT_NE(beyond, big);  // crosses the end: a new one
  EXPECT_EQ(fake.regs, 3);
  cache.release(inner);
  EXPECT_EQ(fake.deregs, 0);  // still referenced once
  cache.release(big);
  EXPECT_EQ(fake.deregs, 1);  // keep_bytes 0: gone with its last user
  EXPECT_EQ(fake.live.count(0x100000), 0u);
  cache.release(other_kind);
  cache.release(beyond);
  EXPECT_EQ(cache.entry_count(), 0u);
  EXPECT_TRUE(fake.live.empty());
}

TEST(IbRegCache, IdleRegistrationsKeptUpToCapacityLeastRecentlyUsedFirstOut) {
  FakeBackend fake;
  RegistrationCache cache(fake.make(), 3 * 4096);
  RegistrationCache::Entry* e[4] = {};
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(cache.acquire(at(0x200000 + 0x10000 * i), 4096, 1, &e[i]).ok());
  for (int i = 0; i < 4; ++i) cache.release(e[i]);
  // Four idle pages, room for three: the first released (least recently used) went.
  EXPECT_EQ(fake.deregs, 1);
  EXPECT_EQ(fake.live.count(0x200000), 0u);
  EXPECT_EQ(cache.idle_bytes(), 3u * 4096);
  RegistrationCache::Entry* again = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x210000), 10, 1, &again).ok());
  EXPECT_EQ(again, e[1]);  // reused from the idle list, no new registration
  EXPECT_EQ(fake.regs, 4);
  EXPECT_EQ(cache.idle_bytes(), 2u * 4096);
  RegistrationCache::Entry* fresh = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x300000), 2 * 4096, 1, &fresh).ok());
  cache.release(fresh);  // 4 pages idle now: e[2] (oldest idle) goes
  EXPECT_EQ(fake.live.count(0x220000), 0u);
  EXPECT_EQ(fake.live.count(0x230000), 1u);
  cache.release(again);
  EXPECT_LE(cache.idle_bytes(), 3u * 4096);
}

TEST(IbRegCache, FailedRegistrationDropsIdleOnesAndReports) {
  FakeBackend fake;
  RegistrationCache cache(fake.make(), 1 << 20);
  RegistrationCache::Entry* e = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x400000), 4096, 1, &e).ok());
  cache.release(e);
  EXPECT_EQ(cache.entry_count(), 1u);
  fake.refuse = true;
  RegistrationCache::Entry* f = nullptr;
  Status s = cache.acquire(at(0x500000), 4096, 1, &f);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(f, nullptr);
  EXPECT_EQ(cache.entry_count(), 0u);  // idle ones were given up to make room
  fake.refuse = false;
  ASSERT_TRUE(cache.acquire(at(0x500000), 4096, 1, &f).ok());
  cache.release(f);
}

TEST(IbRegCache, ZeroLengthAndWrapAround) {
  FakeBackend fake;
  RegistrationCache cache(fake.make(), 0);
  RegistrationCache::Entry* e = nullptr;
  ASSERT_TRUE(cache.acquire(at(0x600000), 0, 1, &e).ok());
  EXPECT_EQ(e->length, 4096u);
  cache.release(e);
  EXPECT_FALSE(cache.acquire(at(UINTPTR_MAX - 10), 100, 1, &e).ok());
}

}  // namespace
}  // namespace ciuic::transport::ib
