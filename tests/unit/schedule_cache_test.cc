// The communicator's schedule cache: a hit returns the schedule built for the same call, any
// argument a builder reads makes a different entry, the size stays bounded (least recently
// used out first), and a configuration change empties it.
#include "coll/schedule_cache.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <vector>

#include "base/config.h"

namespace ciuic::coll {
namespace {

CollectiveArgs allreduce(size_t count) {
  CollectiveArgs a;
  a.collective = Collective::kAllreduce;
  a.rank = 1;
  a.nranks = 4;
  a.count = count;
  a.datatype = CIUIC_FLOAT32;
  a.op = CIUIC_SUM;
  return a;
}

std::shared_ptr<const Schedule> schedule_named(const char* name) {
  auto s = std::make_shared<Schedule>();
  s->algorithm = name;
  return s;
}

TEST(ScheduleCache, MissThenHitReturnsTheSameSchedule) {
  ScheduleCache cache;
  const CollectiveArgs args = allreduce(2);
  EXPECT_EQ(cache.find(args), nullptr);
  auto built = schedule_named("ring");
  cache.insert(args, built);
  EXPECT_EQ(cache.find(args), built);
  EXPECT_EQ(cache.find(allreduce(2)), built);  // equal arguments, another object
  EXPECT_EQ(cache.size(), 1u);
}

TEST(ScheduleCache, EveryArgumentABuilderReadsMakesAnotherEntry) {
  ScheduleCache cache;
  const CollectiveArgs base = allreduce(1024);
  cache.insert(base, schedule_named("base"));
  std::vector<CollectiveArgs> variants;
  auto vary = [&](auto change) {
    CollectiveArgs a = base;
    change(a);
    variants.push_back(a);
  };
  vary([](CollectiveArgs& a) { a.collective = Collective::kReduce; });
  vary([](CollectiveArgs& a) { a.count = 1025; });
  vary([](CollectiveArgs& a) { a.datatype = CIUIC_FLOAT64; });
  vary([](CollectiveArgs& a) { a.op = CIUIC_MAX; });
  vary([](CollectiveArgs& a) { a.root = 2; });
  vary([](CollectiveArgs& a) { a.peer = 3; });
  vary([](CollectiveArgs& a) { a.rank = 2; });
  vary([](CollectiveArgs& a) { a.nranks = 5; });
  vary([](CollectiveArgs& a) { a.in_place = true; });
  vary([](CollectiveArgs& a) { a.in_place_mpi = true; });
  vary([](CollectiveArgs& a) { a.chunk_bytes = 4096; });
  vary([](CollectiveArgs& a) { a.scratch_slots = 4; });
  vary([](CollectiveArgs& a) { a.torus_dims = {2, 2, 1}; });
  for (size_t i = 0; i < variants.size(); ++i) {
    SCOPED_TRACE("variant " + std::to_string(i));
    EXPECT_EQ(cache.find(variants[i]), nullptr);
  }
  for (size_t i = 0; i < variants.size(); ++i)
    cache.insert(variants[i], schedule_named("variant"));
  EXPECT_EQ(cache.size(), variants.size() + 1);
  EXPECT_EQ(cache.find(base)->algorithm, "base");
}

TEST(ScheduleCache, StaysWithinItsCapacityDroppingTheLeastRecentlyUsed) {
  ScheduleCache cache(3);
  auto a = schedule_named("a"), b = schedule_named("b"), c = schedule_named("c");
  cache.insert(allreduce(1), a);
  cache.insert(allreduce(2), b);
  cache.insert(allreduce(3), c);
  EXPECT_EQ(cache.find(allreduce(1)), a);  // 1 is now the most recent; 2 the least
  cache.insert(allreduce(4), schedule_named("d"));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.find(allreduce(2)), nullptr);
  EXPECT_EQ(cache.find(allreduce(1)), a);
  EXPECT_EQ(cache.find(allreduce(3)), c);
  for (size_t count = 10; count < 100; ++count) cache.insert(allreduce(count), a);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.capacity(), 3u);
}

// The most recent entry answers a repeated call without hashing: alternating with another
// shape must still find each one's own schedule.
TEST(ScheduleCache, TheMostRecentEntryAnswersOnlyItsOwnCall) {
  ScheduleCache cache;
  auto small = schedule_named("small"), large = schedule_named("large");
  cache.insert(allreduce(2), small);
  cache.insert(allreduce(1 << 20), large);
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(cache.find(allreduce(2)), small);
    EXPECT_EQ(cache.find(allreduce(2)), small);
    EXPECT_EQ(cache.find(allreduce(1 << 20)), large);
    CollectiveArgs reduced = allreduce(2);
    reduced.op = CIUIC_MIN;
    EXPECT_EQ(cache.find(reduced), nullptr);
  }
}

TEST(ScheduleCache, InsertingAKeyAgainReplacesItsSchedule) {
  ScheduleCache cache(2);
  auto first = schedule_named("first"), second = schedule_named("second");
  cache.insert(allreduce(8), first);
  cache.insert(allreduce(8), second);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.find(allreduce(8)), second);
}

// CIUIC_ALGO (or the tuner file, or the topology) may pick another algorithm after an
// override: a schedule built before must not be run after.
TEST(ScheduleCache, AConfigurationChangeEmptiesIt) {
  ScheduleCache cache;
  cache.insert(allreduce(2), schedule_named("before"));
  ASSERT_NE(cache.find(allreduce(2)), nullptr);
  config::set_override("CIUIC_ALGO", std::string("ring"));
  EXPECT_EQ(cache.find(allreduce(2)), nullptr);
  EXPECT_EQ(cache.size(), 0u);
  cache.insert(allreduce(2), schedule_named("under ring"));
  EXPECT_EQ(cache.find(allreduce(2))->algorithm, "under ring");
  config::set_override("CIUIC_ALGO", std::nullopt);
  EXPECT_EQ(cache.find(allreduce(2)), nullptr);
}

}  // namespace
}  // namespace ciuic::coll
