// The disk scheduler and the rotating-disk model (host-vmm/disk/): each policy's decisions
// step by step, then a discrete-event simulation of guest readers on the model that shows
// what anticipation, and the process identity behind it, buy.
#include "disk/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "disk/disk_model.h"

namespace gears::vmm::disk {
namespace {

constexpr uint64_t kMs = 1'000'000;

DiskRequest read(uint64_t seq, uint64_t issuer, uint64_t sector, uint64_t now, uint64_t sectors = 256) {
  return {seq, false, sector, sectors, issuer, now};
}

TEST(DiskModel, SequentialCostsOnlyTheTransfer) {
  DiskModel m(1ULL << 30);  // 512 GiB
  const DiskRequest r = read(0, 1, 1000, 0, 256);  // 128 KiB
  // 131072 bytes at 125 MB/s: 1.048576 ms, no seek, no rotation.
  EXPECT_EQ(m.service_ns(1000, r), 1'048'576u);
}

TEST(DiskModel, SeeksGrowWithDistanceUpToTheFullStroke) {
  DiskModel m(1ULL << 30);
  EXPECT_NEAR(m.full_stroke_ms(), 1.0 + 7.5 * 15 / 8, 1e-9);  // from the datasheet's average
  const DiskRequest r = read(0, 1, 0, 0, 0);
  const uint64_t near = m.service_ns(8, r), mid = m.service_ns(1ULL << 28, r), far = m.service_ns(1ULL << 30, r);
  const uint64_t half_rev = 4'166'666;  // 7200 rpm
  EXPECT_NEAR(static_cast<double>(near), 1.0 * kMs + half_rev, 0.01 * kMs);  // track to track
  EXPECT_LT(near, mid);
  EXPECT_LT(mid, far);
  EXPECT_NEAR(static_cast<double>(far), m.full_stroke_ms() * kMs + half_rev, 0.01 * kMs);
}

TEST(Scheduler, NamesParse) {
  EXPECT_EQ(*parse_scheduler_kind("fifo"), SchedulerKind::kFifo);
  EXPECT_EQ(*parse_scheduler_kind("as"), SchedulerKind::kAnticipatory);
  EXPECT_EQ(*parse_scheduler_kind("as-anon"), SchedulerKind::kAnticipatoryAnon);
  auto bad = parse_scheduler_kind("cfq");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("fifo, as, as-anon"), std::string::npos);
}

TEST(Scheduler, FifoServesInArrivalOrderAndNeverWaits) {
  auto s = make_scheduler(SchedulerKind::kFifo);
  s->add(read(0, 1, 100, 0), 0);
  s->add(read(1, 2, 900000, 0), 0);
  s->add(read(2, 1, 356, 0), 0);
  std::vector<uint64_t> order;
  while (auto d = s->next(0).serve) {
    order.push_back(d->seq);
    s->completed(*d, 0);
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{0, 1, 2}));
  EXPECT_EQ(s->next(0).wait_until_ns, 0u);
}

// After P's read completes with Q's read pending, the disk waits for P's next nearby read
// and serves it before Q's.
TEST(Scheduler, AnticipatesTheSameProcessNextRead) {
  auto s = make_scheduler(SchedulerKind::kAnticipatory);
  s->add(read(0, /*P*/ 1, 1000, 0), 0);
  auto d = s->next(0).serve;
  ASSERT_TRUE(d);
  s->add(read(1, /*Q*/ 2, 500000, 0), 0);  // Q waits behind P
  s->completed(*d, 1 * kMs);
  const Decision wait = s->next(1 * kMs);
  EXPECT_FALSE(wait.serve);  // Q is pending, but the disk waits for P
  EXPECT_EQ(wait.wait_until_ns, 1 * kMs + SchedulerParams{}.window_ns);
  s->add(read(2, 1, 1256, 2 * kMs), 2 * kMs);  // P's next, right after its last
  auto next = s->next(2 * kMs).serve;
  ASSERT_TRUE(next);
  EXPECT_EQ(next->seq, 2u);
  EXPECT_EQ(s->stats().hits, 1u);
}

TEST(Scheduler, AnticipationExpiresAfterTheWindow) {
  auto s = make_scheduler(SchedulerKind::kAnticipatory);
  s->add(read(0, 1, 1000, 0), 0);
  auto d = s->next(0).serve;
  s->add(read(1, 2, 500000, 0), 0);
  s->completed(*d, 0);
  EXPECT_FALSE(s->next(SchedulerParams{}.window_ns - 1).serve);
  auto q = s->next(SchedulerParams{}.window_ns).serve;  // P never came back
  ASSERT_TRUE(q);
  EXPECT_EQ(q->issuer, 2u);
  EXPECT_EQ(s->stats().expired, 1u);
}

TEST(Scheduler, AProcessThatExitsIsNotWaitedFor) {
  auto s = make_scheduler(SchedulerKind::kAnticipatory);
  s->add(read(0, 1, 1000, 0), 0);
  auto d = s->next(0).serve;
  s->add(read(1, 2, 500000, 0), 0);
  s->completed(*d, 0);
  s->forget(1);  // the tracker saw P exit
  auto q = s->next(1).serve;
  ASSERT_TRUE(q);
  EXPECT_EQ(q->issuer, 2u);
}

TEST(Scheduler, UnknownIssuersAndWritesAreNotAnticipated) {
  auto s = make_scheduler(SchedulerKind::kAnticipatory);
  s->add(read(0, 0, 1000, 0), 0);  // issuer unknown
  auto d = s->next(0).serve;
  s->add(read(1, 2, 500000, 0), 0);
  s->completed(*d, 0);
  EXPECT_TRUE(s->next(0).serve);
  DiskRequest w = read(2, 1, 1000, 0);
  w.write = true;
  s->add(w, 0);
  d = s->next(0).serve;
  s->add(read(3, 2, 500000, 0), 0);
  s->completed(*d, 0);
  EXPECT_TRUE(s->next(0).serve);
  EXPECT_EQ(s->stats().anticipated, 0u);
}

// A process whose reads land far apart (a random reader) stops being waited for once its
// history says so; a sequential one keeps being waited for.
TEST(Scheduler, HistoryVetoesWaitingForARandomReader) {
  auto s = make_scheduler(SchedulerKind::kAnticipatory);
  uint64_t t = 0, seq = 0;
  for (int i = 0; i < 6; ++i) {
    s->add(read(seq++, 7, (i % 2) ? 10'000'000 : 100, t), t);  // jumps across the disk
    auto d = s->next(t).serve;
    ASSERT_TRUE(d);
    t += kMs;
    s->completed(*d, t);
  }
  s->add(read(seq++, 8, 5000, t), t);
  EXPECT_TRUE(s->next(t).serve) << "waited for a process whose reads are far apart";
}

// A run of one process is capped: after `batch`, a waiting request gets its turn.
TEST(Scheduler, BatchCapsHowLongOthersWait) {
  SchedulerParams p;
  p.batch_ns = 10 * kMs;
  auto s = make_scheduler(SchedulerKind::kAnticipatory, p);
  DiskRequest q_write = read(0, 2, 900000, 0);  // Q's first request: a write (not anticipated)
  q_write.write = true;
  s->add(q_write, 0);
  uint64_t t = 0, seq = 1, sector = 0;
  s->add(read(seq++, 1, sector, t), t);
  // Q came first: it is served first, then P runs.
  ASSERT_EQ(s->next(t).serve->issuer, 2u);
  s->completed(q_write, t);
  int p_served = 0;
  for (;;) {
    auto d = s->next(t).serve;
    if (!d) break;
    if (d->issuer == 2) break;
    ++p_served;
    t += kMs;
    s->completed(*d, t);
    sector = d->end();
    if (p_served == 1) s->add(read(seq++, 2, 900000, t), t);  // Q asks again, and waits
    s->add(read(seq++, 1, sector, t), t);
    if (p_served > 100) break;
  }
  EXPECT_GE(p_served, 9);
  EXPECT_LE(p_served, 12) << "P kept the disk past its batch";
}

// --- simulation -------------------------------------------------------------------------------
// Readers on the disk model: each reads `chunk` sectors sequentially from its own region,
// thinks `think` after each completion, then issues the next read. One request in service
// at a time (a disk without command queueing), served in the scheduler's order.
struct SimResult {
  double mb_s = 0;                     // aggregate
  std::vector<double> per_reader_mb_s;
};

SimResult simulate(SchedulerKind kind, int readers, uint64_t think_ns, uint64_t duration_ns,
                   bool identity_visible = true, int random_readers = 0) {
  const uint64_t capacity = 1ULL << 30;  // 512 GiB
  DiskModel model(capacity);
  auto s = make_scheduler(kind);
  const uint64_t chunk = 256;  // 128 KiB, Linux's default readahead
  struct Reader {
    uint64_t issuer, next_sector;
    bool random;
    uint64_t ready_at = 0;  // when its next request arrives
    bool waiting = false;   // has a request queued or in service
    uint64_t bytes = 0;
    uint64_t rng = 0;
  };
  std::vector<Reader> rs;
  const int total = readers + random_readers;
  for (int i = 0; i < total; ++i)
    rs.push_back({identity_visible ? uint64_t(0x1000) * (i + 1) : 0, capacity / total * i, i >= readers, 0,
                  false, 0, 0x9e3779b97f4a7c15ULL * (i + 1)});
  uint64_t now = 0, head = 0, seq = 0;
  std::map<uint64_t, int> owner;  // seq -> reader
  while (now < duration_ns) {
    for (int i = 0; i < total; ++i) {
      Reader& r = rs[i];
      if (r.waiting || r.ready_at > now) continue;
      uint64_t sector = r.next_sector;
      if (r.random) {
        r.rng = r.rng * 6364136223846793005ULL + 1442695040888963407ULL;
        sector = (r.rng >> 20) % (capacity - chunk);
      }
      owner[seq] = i;
      s->add(DiskRequest{seq++, false, sector, chunk, r.issuer, r.ready_at}, now);
      r.waiting = true;
    }
    Decision d = s->next(now);
    if (d.serve) {
      now += model.service_ns(head, *d.serve);
      head = d.serve->end();
      Reader& r = rs[owner[d.serve->seq]];
      r.bytes += d.serve->sectors * 512;
      r.next_sector = d.serve->end();
      r.waiting = false;
      r.ready_at = now + think_ns;
      s->completed(*d.serve, now);
      continue;
    }
    // Idle: until the next arrival or the end of an anticipation, whichever is first.
    uint64_t next = duration_ns;
    for (const Reader& r : rs)
      if (!r.waiting) next = std::min(next, std::max(r.ready_at, now + 1));
    if (d.wait_until_ns) next = std::min(next, std::max(d.wait_until_ns, now + 1));
    now = next;
  }
  SimResult out;
  for (const Reader& r : rs) {
    const double mb_s = static_cast<double>(r.bytes) / (static_cast<double>(duration_ns) / 1e9) / 1e6;
    out.per_reader_mb_s.push_back(mb_s);
    out.mb_s += mb_s;
  }
  return out;
}

// Antfarm's case: competing sequential readers. FIFO seeks between them on every request;
// anticipating by process keeps each reader streaming for its batch.
TEST(SchedulerSimulation, AnticipationByProcessBeatsFifoForSequentialReaders) {
  for (int readers : {2, 4}) {
    const SimResult fifo = simulate(SchedulerKind::kFifo, readers, 300'000, 10'000 * kMs);
    const SimResult as = simulate(SchedulerKind::kAnticipatory, readers, 300'000, 10'000 * kMs);
    std::printf("simulated, %d sequential readers: fifo %.1f MB/s, as %.1f MB/s\n", readers, fifo.mb_s, as.mb_s);
    EXPECT_GT(as.mb_s, 3 * fifo.mb_s) << readers << " readers: as " << as.mb_s << " MB/s, fifo " << fifo.mb_s;
    // Fair: no reader gets less than half its share.
    for (double r : as.per_reader_mb_s) EXPECT_GT(r, as.mb_s / readers / 2) << readers << " readers";
  }
}

// Without identity the wait ends with anyone's nearby read and one history covers everyone:
// a random reader among the sequential ones makes that history say "far", and the disk stops
// waiting for anyone; by process, the sequential readers still get their anticipation.
TEST(SchedulerSimulation, IdentityKeepsAnticipationAliveBesideARandomReader) {
  const SimResult by_process = simulate(SchedulerKind::kAnticipatory, 2, 300'000, 10'000 * kMs, true, 1);
  const SimResult anon = simulate(SchedulerKind::kAnticipatoryAnon, 2, 300'000, 10'000 * kMs, true, 1);
  const SimResult fifo = simulate(SchedulerKind::kFifo, 2, 300'000, 10'000 * kMs, true, 1);
  std::printf("simulated, 2 sequential + 1 random reader: fifo %.1f, as-anon %.1f, as %.1f MB/s\n", fifo.mb_s,
              anon.mb_s, by_process.mb_s);
  EXPECT_GT(by_process.mb_s, 1.5 * anon.mb_s) << "as " << by_process.mb_s << ", as-anon " << anon.mb_s;
  EXPECT_GT(by_process.mb_s, 1.5 * fifo.mb_s);
}

}  // namespace
}  // namespace gears::vmm::disk
