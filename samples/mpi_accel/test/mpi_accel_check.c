/* mpi_accel_check: an MPI program that checks the RESULTS of point-to-point and collective
 * traffic, for the gears BTL (samples/mpi_accel/btl) or any other transport. Any number of
 * ranks >= 2.
 *
 *   ping-pong (blocking) rank 0 <-> every other rank: 0, 1, 8, 64 B, 1 KiB, 64 KiB, 1, 4 MiB,
 *     data patterns, counts, sources and tags verified both ways
 *   neighbour exchange (MPI_Sendrecv, rank -> rank+1) at several sizes: every pair of a ring
 *   nonblocking: every rank Isends to and Irecvs from every other rank at once, several
 *     messages per pair with the same tag (MPI's non-overtaking order is checked) + a large one
 *   MPI_Comm_split (reversed keys; by parity when there are >= 4 ranks): ranks checked,
 *     ping-pong and Allreduce inside
 *   a strided MPI_Type_vector sent and received (both directions, small and > 1 MiB)
 *   MPI_Allreduce (sum, small and 1 Mi elements), MPI_Bcast (1 MiB from rank 0, small from the
 *     last rank), MPI_Barrier
 *   a message larger than the posted receive: MPI_ERR_TRUNCATE (MPI_ERRORS_RETURN), small
 *     (eager) and large (rendezvous); the communicator stays usable afterwards
 *
 * Rank 0 prints "mpi_accel_check: OK <details>" when every rank passed; exit status 1 (and
 * "mpi_accel_check: FAIL ...") otherwise. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, nranks;
static long failures;
static char first_failure[256];

static void fail(const char *what, long a, long b) {
  if (failures++ == 0) snprintf(first_failure, sizeof first_failure, "%s (%ld vs %ld)", what, a, b);
  if (failures <= 10) fprintf(stderr, "mpi_accel_check: rank %d: FAIL %s (%ld vs %ld)\n", rank, what, a, b);
}

#define EXPECT_EQ(what, a, b)                   \
  do {                                          \
    long _a = (long)(a), _b = (long)(b);        \
    if (_a != _b) fail(what, _a, _b);           \
  } while (0)

static unsigned char pat(long seed, size_t i) { return (unsigned char)((i * 2654435761u) >> 13 ^ (size_t)seed * 97u); }

static void fill(unsigned char *buf, size_t n, long seed) {
  for (size_t i = 0; i < n; i++) buf[i] = pat(seed, i);
}

static void verify(const char *what, const unsigned char *buf, size_t n, long seed) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != pat(seed, i)) {
      fail(what, (long)i, (long)n);
      return;
    }
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "mpi_accel_check: out of memory\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return p;
}

static const size_t pp_sizes[] = {0, 1, 8, 64, 1024, 64 * 1024, 1024 * 1024, 4 * 1024 * 1024};
#define NSIZES (sizeof pp_sizes / sizeof pp_sizes[0])
#define MAXSIZE (4 * 1024 * 1024)

static void test_pingpong(MPI_Comm comm, int me, int n, int tagbase) {
  unsigned char *buf = xmalloc(MAXSIZE);
  MPI_Status st;
  int count;
  for (int peer = 1; peer < n; peer++) {
    if (me != 0 && me != peer) continue;
    for (size_t k = 0; k < NSIZES; k++) {
      size_t sz = pp_sizes[k];
      long seed_out = (long)(k * 1000 + (size_t)peer), seed_back = seed_out + 500;
      for (int rep = 0; rep < 2; rep++) {
        if (me == 0) {
          fill(buf, sz, seed_out + rep);
          MPI_Send(buf, (int)sz, MPI_BYTE, peer, tagbase + (int)k, comm);
          memset(buf, 0, sz);
          MPI_Recv(buf, MAXSIZE, MPI_BYTE, peer, tagbase + 100 + (int)k, comm, &st);
          MPI_Get_count(&st, MPI_BYTE, &count);
          EXPECT_EQ("pingpong: count back", count, sz);
          EXPECT_EQ("pingpong: source back", st.MPI_SOURCE, peer);
          EXPECT_EQ("pingpong: tag back", st.MPI_TAG, tagbase + 100 + (int)k);
          verify("pingpong: data back", buf, sz, seed_back + rep);
        } else {
          memset(buf, 0, sz);
          MPI_Recv(buf, MAXSIZE, MPI_BYTE, 0, MPI_ANY_TAG, comm, &st);
          MPI_Get_count(&st, MPI_BYTE, &count);
          EXPECT_EQ("pingpong: count", count, sz);
          EXPECT_EQ("pingpong: source", st.MPI_SOURCE, 0);
          EXPECT_EQ("pingpong: tag", st.MPI_TAG, tagbase + (int)k);
          verify("pingpong: data", buf, sz, seed_out + rep);
          fill(buf, sz, seed_back + rep);
          MPI_Send(buf, (int)sz, MPI_BYTE, 0, tagbase + 100 + (int)k, comm);
        }
      }
    }
  }
  free(buf);
}

static void test_neighbours(void) {
  static const size_t sizes[] = {0, 7, 4096, 100000, 3 * 1024 * 1024 + 5};
  int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t sz = sizes[k];
    unsigned char *out = xmalloc(sz), *in = xmalloc(sz);
    MPI_Status st;
    int count;
    fill(out, sz, 7000 + rank * 10 + (long)k);
    memset(in, 0, sz);
    MPI_Sendrecv(out, (int)sz, MPI_BYTE, right, 300 + (int)k, in, (int)sz, MPI_BYTE, left, 300 + (int)k,
                 MPI_COMM_WORLD, &st);
    MPI_Get_count(&st, MPI_BYTE, &count);
    EXPECT_EQ("neighbours: count", count, sz);
    verify("neighbours: data", in, sz, 7000 + left * 10 + (long)k);
    free(out);
    free(in);
  }
}

/* Every rank to every other rank at once, both directions: NMSG messages per pair with the
 * same tag (must match in send order) and one large one. */
#define NMSG 8
#define SMALL 200
#define LARGE (300 * 1024)
static void test_nonblocking(void) {
  int peers = nranks - 1;
  MPI_Request *reqs = xmalloc(sizeof(MPI_Request) * (size_t)peers * (NMSG + 1) * 2);
  MPI_Status *sts = xmalloc(sizeof(MPI_Status) * (size_t)peers * (NMSG + 1) * 2);
  unsigned char *sbuf = xmalloc((size_t)nranks * (NMSG * SMALL + LARGE));
  unsigned char *rbuf = xmalloc((size_t)nranks * (NMSG * SMALL + LARGE));
  int nr = 0;
  const size_t stride = NMSG * SMALL + LARGE;
  memset(rbuf, 0, (size_t)nranks * stride);
  for (int p = 0; p < nranks; p++) {
    if (p == rank) continue;
    for (int m = 0; m < NMSG; m++)
      MPI_Irecv(rbuf + (size_t)p * stride + (size_t)m * SMALL, SMALL, MPI_BYTE, p, 400, MPI_COMM_WORLD, &reqs[nr++]);
    MPI_Irecv(rbuf + (size_t)p * stride + NMSG * SMALL, LARGE, MPI_BYTE, p, 401, MPI_COMM_WORLD, &reqs[nr++]);
  }
  for (int p = 0; p < nranks; p++) {
    if (p == rank) continue;
    for (int m = 0; m < NMSG; m++) {
      unsigned char *b = sbuf + (size_t)p * stride + (size_t)m * SMALL;
      fill(b, SMALL, 9000 + rank * 100 + p * 10 + m);
      MPI_Isend(b, SMALL, MPI_BYTE, p, 400, MPI_COMM_WORLD, &reqs[nr++]);
    }
    fill(sbuf + (size_t)p * stride + NMSG * SMALL, LARGE, 9999 + rank * 100 + p);
    MPI_Isend(sbuf + (size_t)p * stride + NMSG * SMALL, LARGE, MPI_BYTE, p, 401, MPI_COMM_WORLD, &reqs[nr++]);
  }
  MPI_Waitall(nr, reqs, sts);
  for (int p = 0; p < nranks; p++) {
    if (p == rank) continue;
    for (int m = 0; m < NMSG; m++)
      verify("nonblocking: small message (order)", rbuf + (size_t)p * stride + (size_t)m * SMALL, SMALL,
             9000 + p * 100 + rank * 10 + m);
    verify("nonblocking: large message", rbuf + (size_t)p * stride + NMSG * SMALL, LARGE, 9999 + p * 100 + rank);
  }
  free(reqs);
  free(sts);
  free(sbuf);
  free(rbuf);
}

static void test_split(void) {
  MPI_Comm sub;
  int color = nranks >= 4 ? rank % 2 : 0;
  int srank, ssize, expect_size = 0, expect_rank = 0;
  long sum = 0, expect_sum = 0;
  MPI_Comm_split(MPI_COMM_WORLD, color, nranks - rank, &sub); /* reversed order */
  MPI_Comm_rank(sub, &srank);
  MPI_Comm_size(sub, &ssize);
  for (int r = 0; r < nranks; r++) {
    if ((nranks >= 4 ? r % 2 : 0) != color) continue;
    expect_size++;
    if (r > rank) expect_rank++;
    expect_sum += r;
  }
  EXPECT_EQ("split: size", ssize, expect_size);
  EXPECT_EQ("split: rank", srank, expect_rank);
  if (ssize >= 2) test_pingpong(sub, srank, ssize < 3 ? ssize : 3, 500);
  {
    long mine = rank;
    MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, sub);
    EXPECT_EQ("split: allreduce", sum, expect_sum);
  }
  MPI_Comm_free(&sub);
}

static void test_vector(void) {
  static const int counts[] = {1000, 100000}; /* 12 KB and 1.2 MB of payload */
  for (size_t k = 0; k < 2; k++) {
    const int count = counts[k], blen = 3, stride = 7;
    MPI_Datatype vec;
    int *strided = xmalloc(sizeof(int) * (size_t)count * stride);
    int *packed = xmalloc(sizeof(int) * (size_t)count * blen);
    MPI_Status st;
    int n;
    MPI_Type_vector(count, blen, stride, MPI_INT, &vec);
    MPI_Type_commit(&vec);
    if (rank == 0) {
      for (int i = 0; i < count * stride; i++) strided[i] = (i % stride) < blen ? i * 3 + 1 : -1;
      MPI_Send(strided, 1, vec, 1, 600, MPI_COMM_WORLD);
      /* back: contiguous -> strided receive; the gaps must stay untouched */
      for (int i = 0; i < count * stride; i++) strided[i] = -7;
      MPI_Recv(strided, 1, vec, 1, 601, MPI_COMM_WORLD, &st);
      MPI_Get_count(&st, MPI_INT, &n);
      EXPECT_EQ("vector: count back", n, count * blen);
      for (int i = 0; i < count * stride; i++) {
        int expect = (i % stride) < blen ? (i / stride * blen + i % stride) * 5 : -7;
        if (strided[i] != expect) {
          fail("vector: strided receive", i, strided[i]);
          break;
        }
      }
    } else if (rank == 1) {
      MPI_Recv(packed, count * blen, MPI_INT, 0, 600, MPI_COMM_WORLD, &st);
      MPI_Get_count(&st, MPI_INT, &n);
      EXPECT_EQ("vector: count", n, count * blen);
      for (int j = 0; j < count * blen; j++) {
        int i = j / blen * stride + j % blen;
        if (packed[j] != i * 3 + 1) {
          fail("vector: strided send", j, packed[j]);
          break;
        }
      }
      for (int j = 0; j < count * blen; j++) packed[j] = j * 5;
      MPI_Send(packed, count * blen, MPI_INT, 0, 601, MPI_COMM_WORLD);
    }
    MPI_Type_free(&vec);
    free(strided);
    free(packed);
  }
}

static void test_collectives(void) {
  const int n = 1 << 20;
  long long *in = xmalloc(sizeof(long long) * (size_t)n), *out = xmalloc(sizeof(long long) * (size_t)n);
  unsigned char *b = xmalloc(1 << 20);
  long long small_in[3] = {rank, 1, (long long)rank * rank}, small_out[3];
  long long sq = 0;
  for (int r = 0; r < nranks; r++) sq += (long long)r * r;
  MPI_Allreduce(small_in, small_out, 3, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ("allreduce: sum of ranks", small_out[0], (long long)nranks * (nranks - 1) / 2);
  EXPECT_EQ("allreduce: count", small_out[1], nranks);
  EXPECT_EQ("allreduce: sum of squares", small_out[2], sq);
  for (int i = 0; i < n; i++) in[i] = (long long)rank * i + 1;
  MPI_Allreduce(in, out, n, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  for (int i = 0; i < n; i++) {
    long long expect = (long long)i * nranks * (nranks - 1) / 2 + nranks;
    if (out[i] != expect) {
      fail("allreduce: large", i, (long)out[i]);
      break;
    }
  }
  if (rank == 0) fill(b, 1 << 20, 4242);
  else memset(b, 0, 1 << 20);
  MPI_Bcast(b, 1 << 20, MPI_BYTE, 0, MPI_COMM_WORLD);
  verify("bcast: 1 MiB from rank 0", b, 1 << 20, 4242);
  if (rank == nranks - 1) fill(b, 100, 4343);
  else memset(b, 0, 100);
  MPI_Bcast(b, 100, MPI_BYTE, nranks - 1, MPI_COMM_WORLD);
  verify("bcast: 100 B from the last rank", b, 100, 4343);
  MPI_Barrier(MPI_COMM_WORLD);
  free(in);
  free(out);
  free(b);
}

static void test_truncate(void) {
  MPI_Comm comm;
  static const int sent[2] = {100, 256 * 1024}; /* eager, rendezvous */
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  for (int k = 0; k < 2; k++) {
    unsigned char *b = xmalloc((size_t)sent[k]);
    if (rank == 0) {
      int rc;
      fill(b, (size_t)sent[k], 77 + k);
      rc = MPI_Send(b, sent[k], MPI_BYTE, 1, 700 + k, comm);
      EXPECT_EQ("truncate: sender's MPI_Send", rc, MPI_SUCCESS);
    } else if (rank == 1) {
      MPI_Status st;
      int rc, cls = -1;
      rc = MPI_Recv(b, 10, MPI_BYTE, 0, 700 + k, comm, &st);
      if (rc != MPI_SUCCESS) MPI_Error_class(rc, &cls);
      EXPECT_EQ("truncate: error class of an oversized message", cls, MPI_ERR_TRUNCATE);
    }
    free(b);
  }
  /* still usable */
  {
    int v = rank, sum = 0;
    MPI_Allreduce(&v, &sum, 1, MPI_INT, MPI_SUM, comm);
    EXPECT_EQ("truncate: communicator usable afterwards", sum, nranks * (nranks - 1) / 2);
  }
  MPI_Comm_free(&comm);
}

int main(int argc, char **argv) {
  long total = 0;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  if (nranks < 2) {
    if (rank == 0) fprintf(stderr, "mpi_accel_check: FAIL needs at least 2 ranks\n");
    MPI_Finalize();
    return 1;
  }
  test_pingpong(MPI_COMM_WORLD, rank, nranks, 100);
  test_neighbours();
  test_nonblocking();
  test_split();
  test_vector();
  test_collectives();
  test_truncate();
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Allreduce(&failures, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    if (total == 0)
      printf("mpi_accel_check: OK ranks=%d pingpong=0..4MiB(%zu sizes x %d peers) neighbours nonblocking split "
             "vector allreduce bcast barrier truncate\n",
             nranks, NSIZES, nranks - 1);
    else
      printf("mpi_accel_check: FAIL %ld failed check(s); rank 0's first: %s\n", total,
             failures ? first_failure : "(on another rank, see stderr)");
    fflush(stdout);
  }
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
