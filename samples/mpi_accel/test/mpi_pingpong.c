/* mpi_pingpong: latency and bandwidth between ranks 0 and 1 (other ranks only wait).
 *
 *   mpirun -np 2 ... mpi_pingpong [max_bytes] [time_scale]
 *
 * For sizes 8 B, 32 B, ... 512 KiB (powers of 4), 1, 2, 4 MiB (up to max_bytes, default 4 MiB):
 *   latency: half the average round trip of blocking MPI_Send/MPI_Recv ping-pongs
 *   bandwidth: rank 0 streams windows of 16 MPI_Isend to rank 1 (which pre-posts MPI_Irecv),
 *              a zero-byte acknowledgement closes each window; bytes / elapsed time
 * One line per size on rank 0:
 *   mpi_pingpong: size=<bytes> iters=<n> lat_us=<microseconds> bw_MBps=<10^6 bytes/s>
 * Then an MPI_Allreduce (sum of doubles) over all ranks for 8 B and 64 KiB:
 *   mpi_pingpong: allreduce bytes=<bytes> iters=<n> us=<microseconds per call>
 * and the point-to-point messages rank 0 sent and received, warm-up included (for exits per
 * message: the VMM's exit count over the run divided by it):
 *   mpi_pingpong: messages=<n>
 * The first byte and last byte of every received message are checked (a broken transport
 * aborts with exit status 1 instead of printing fast nonsense). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 16

static void check(const unsigned char *b, size_t n, unsigned char v, const char *what) {
  if (n > 0 && (b[0] != v || b[n - 1] != v)) {
    fprintf(stderr, "mpi_pingpong: FAIL %s: size %zu: got %u/%u, expected %u\n", what, n, b[0], b[n - 1], v);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

int main(int argc, char **argv) {
  int rank, nranks;
  size_t max_bytes = 4u << 20;
  double scale = 1.0;
  size_t sizes[32];
  int nsizes = 0;
  unsigned char *buf, *win;
  unsigned long long messages = 0;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  if (argc > 1) max_bytes = strtoull(argv[1], NULL, 0);
  if (argc > 2) scale = atof(argv[2]);
  if (scale <= 0) scale = 1.0;
  if (nranks < 2) {
    fprintf(stderr, "mpi_pingpong: needs 2 ranks\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  {
    static const size_t all[] = {8, 32, 128, 512, 2048, 8192, 32768, 131072, 524288, 1u << 20, 2u << 20, 4u << 20};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
      if (all[i] <= max_bytes) sizes[nsizes++] = all[i];
  }
  buf = malloc(max_bytes);
  win = malloc(max_bytes * WINDOW);
  if (!buf || !win) MPI_Abort(MPI_COMM_WORLD, 2);
  memset(win, 0, max_bytes * WINDOW);
  if (rank == 0) printf("# mpi_pingpong: ranks=%d window=%d (latency: half round trip; bandwidth: 0 -> 1 stream)\n", nranks, WINDOW);
  for (int k = 0; k < nsizes; k++) {
    size_t n = sizes[k];
    /* ~0.2 s per phase at 1 GB/s or 5 us round trips, at least 10 iterations */
    int iters = (int)(scale * (n <= 65536 ? 20000.0 * 8 / (8 + n / 64) : 200.0 * (1 << 20) / n));
    int warm;
    double t0 = 0, lat = 0, bw = 0;
    if (iters < 10) iters = 10;
    warm = iters / 10 + 2;
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank <= 1) {
      int peer = 1 - rank;
      for (int i = -warm; i < iters; i++) {
        if (i == 0) t0 = MPI_Wtime();
        if (rank == 0) {
          memset(buf, (unsigned char)i, n);
          MPI_Send(buf, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
          MPI_Recv(buf, (int)n, MPI_BYTE, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          check(buf, n, (unsigned char)(i + 1), "pong");
        } else {
          MPI_Recv(buf, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          check(buf, n, (unsigned char)i, "ping");
          buf[0] = buf[n ? n - 1 : 0] = (unsigned char)(i + 1);
          MPI_Send(buf, (int)n, MPI_BYTE, peer, 2, MPI_COMM_WORLD);
        }
      }
      lat = (MPI_Wtime() - t0) / iters / 2 * 1e6;
      messages += 2ull * (unsigned long long)(iters + warm);
      /* bandwidth */
      {
        int windows = iters / WINDOW + 2;
        MPI_Request reqs[WINDOW];
        for (int w = -1; w < windows; w++) {
          if (w == 0) t0 = MPI_Wtime();
          if (rank == 0) {
            for (int j = 0; j < WINDOW; j++) {
              win[(size_t)j * n] = win[(size_t)j * n + n - 1] = (unsigned char)(w + j);
              MPI_Isend(win + (size_t)j * n, (int)n, MPI_BYTE, peer, 3, MPI_COMM_WORLD, &reqs[j]);
            }
            MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
            MPI_Recv(NULL, 0, MPI_BYTE, peer, 4, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          } else {
            for (int j = 0; j < WINDOW; j++)
              MPI_Irecv(win + (size_t)j * n, (int)n, MPI_BYTE, peer, 3, MPI_COMM_WORLD, &reqs[j]);
            MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
            for (int j = 0; j < WINDOW; j++) check(win + (size_t)j * n, n, (unsigned char)(w + j), "stream");
            MPI_Send(NULL, 0, MPI_BYTE, peer, 4, MPI_COMM_WORLD);
          }
        }
        bw = (double)n * WINDOW * windows / (MPI_Wtime() - t0) / 1e6;
        messages += (unsigned long long)(windows + 1) * (WINDOW + 1);
      }
      if (rank == 0) {
        printf("mpi_pingpong: size=%zu iters=%d lat_us=%.3f bw_MBps=%.1f\n", n, iters, lat, bw);
        fflush(stdout);
      }
    }
  }
  {
    static const int counts[] = {1, 8192}; /* doubles: 8 B, 64 KiB */
    double *in = calloc(8192, sizeof(double)), *out = calloc(8192, sizeof(double));
    if (!in || !out) MPI_Abort(MPI_COMM_WORLD, 2);
    for (int k = 0; k < 2; k++) {
      int iters = (int)(scale * (counts[k] == 1 ? 2000 : 200)), c = counts[k];
      double t0;
      if (iters < 10) iters = 10;
      for (int i = 0; i < c; i++) in[i] = rank + 1;
      MPI_Allreduce(in, out, c, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); /* warm-up */
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = MPI_Wtime();
      for (int i = 0; i < iters; i++) MPI_Allreduce(in, out, c, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      t0 = (MPI_Wtime() - t0) / iters * 1e6;
      if (out[0] != nranks * (nranks + 1) / 2.0 || out[c - 1] != out[0]) {
        fprintf(stderr, "mpi_pingpong: FAIL allreduce: got %g, expected %g\n", out[0], nranks * (nranks + 1) / 2.0);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (rank == 0) printf("mpi_pingpong: allreduce bytes=%zu iters=%d us=%.3f\n", (size_t)c * sizeof(double), iters, t0);
    }
    free(in);
    free(out);
  }
  if (rank == 0) {
    printf("mpi_pingpong: messages=%llu\n", messages);
    fflush(stdout);
  }
  free(buf);
  free(win);
  MPI_Finalize();
  return 0;
}
