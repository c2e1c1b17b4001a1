/* gears-mpi-hello: a small MPI check for the MPI guest image (/usr/bin/gears-mpi-hello in
 * guest-mpi.cpio; tests/integration/mpi/run-mpi-guests).
 *
 *   mpirun -np N [...] gears-mpi-hello [BYTES]
 *
 * Every rank: MPI_Allreduce of its rank (sum must be N(N-1)/2), a ring send/recv of a token
 * (each rank adds its rank + 1), a BYTES-long (default 1 MiB) pattern from rank 0 to every other
 * rank and back (compared byte for byte), and MPI_Get_processor_name gathered on rank 0.
 * Rank 0 prints, when all of it matched:
 *   MPI-CHECK OK size=N hosts=NAME0,NAME1,... bytes=BYTES init_s=S total_s=T
 * (hosts in rank order; init_s: seconds MPI_Init took in rank 0; total_s: its whole run), else
 *   MPI-CHECK FAIL <what>
 * and exits 1 (every rank reports its own failures with its rank). Also prints, on rank 0,
 * MPI-CHECK-UPTIME <seconds> right after MPI_Init (the guest's /proc/uptime, so a script that
 * noted /proc/uptime before mpirun gets the start-up time in the same clock).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char pattern(size_t i, int salt) { return (unsigned char)((i * 131u + (size_t)salt * 7u) & 0xff); }

int main(int argc, char **argv) {
  double t0 = now();
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    fprintf(stderr, "MPI-CHECK FAIL MPI_Init\n");
    return 1;
  }
  double t_init = now() - t0;
  int rank = 0, size = 0, fails = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank == 0) {
    FILE *f = fopen("/proc/uptime", "r");
    double up = 0;
    if (f) {
      if (fscanf(f, "%lf", &up) != 1) up = 0;
      fclose(f);
    }
    printf("MPI-CHECK-UPTIME %.2f\n", up);
    fflush(stdout);
  }
  size_t bytes = 1u << 20;
  if (argc > 1) bytes = (size_t)strtoul(argv[1], NULL, 0);

  /* Allreduce of the ranks. */
  long mine = rank, sum = -1;
  MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (sum != (long)size * (size - 1) / 2) {
    fprintf(stderr, "MPI-CHECK FAIL rank %d: allreduce sum %ld, want %ld\n", rank, sum, (long)size * (size - 1) / 2);
    fails++;
  }

  /* A token around the ring: rank 0 starts with 0, each rank adds rank + 1. */
  if (size > 1) {
    long token = 0;
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    if (rank == 0) {
      token = 1;
      MPI_Send(&token, 1, MPI_LONG, next, 1, MPI_COMM_WORLD);
      MPI_Recv(&token, 1, MPI_LONG, prev, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (token != (long)size * (size + 1) / 2) {
        fprintf(stderr, "MPI-CHECK FAIL rank 0: ring token %ld, want %ld\n", token, (long)size * (size + 1) / 2);
        fails++;
      }
    } else {
      MPI_Recv(&token, 1, MPI_LONG, prev, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      token += rank + 1;
      MPI_Send(&token, 1, MPI_LONG, next, 1, MPI_COMM_WORLD);
    }
  }

  /* A large message from rank 0 to each rank, echoed back changed (each byte + rank). */
  unsigned char *buf = malloc(bytes ? bytes : 1);
  if (!buf) {
    fprintf(stderr, "MPI-CHECK FAIL rank %d: out of memory\n", rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (int peer = 1; peer < size; peer++) {
    if (rank == 0) {
      for (size_t i = 0; i < bytes; i++) buf[i] = pattern(i, peer);
      MPI_Send(buf, (int)bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD);
      MPI_Recv(buf, (int)bytes, MPI_BYTE, peer, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      for (size_t i = 0; i < bytes; i++) {
        if (buf[i] != (unsigned char)(pattern(i, peer) + peer)) {
          fprintf(stderr, "MPI-CHECK FAIL rank 0: echo from rank %d differs at byte %zu\n", peer, i);
          fails++;
          break;
        }
      }
    } else if (rank == peer) {
      MPI_Recv(buf, (int)bytes, MPI_BYTE, 0, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      for (size_t i = 0; i < bytes; i++) {
        if (buf[i] != pattern(i, peer)) {
          fprintf(stderr, "MPI-CHECK FAIL rank %d: message from rank 0 differs at byte %zu\n", rank, i);
          fails++;
          break;
        }
        buf[i] = (unsigned char)(buf[i] + peer);
      }
      MPI_Send(buf, (int)bytes, MPI_BYTE, 0, 3, MPI_COMM_WORLD);
    }
  }
  free(buf);

  /* Processor names and failure counts on rank 0. */
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  MPI_Get_processor_name(name, &len);
  char *names = NULL;
  if (rank == 0) names = calloc((size_t)size, MPI_MAX_PROCESSOR_NAME);
  MPI_Gather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, MPI_COMM_WORLD);
  int all_fails = 0;
  MPI_Reduce(&fails, &all_fails, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    if (all_fails == 0) {
      printf("MPI-CHECK OK size=%d hosts=", size);
      for (int r = 0; r < size; r++) printf("%s%s", r ? "," : "", names + (size_t)r * MPI_MAX_PROCESSOR_NAME);
      printf(" bytes=%zu init_s=%.2f total_s=%.2f\n", bytes, t_init, now() - t0);
    } else {
      printf("MPI-CHECK FAIL %d failed checks (see the lines above)\n", all_fails);
    }
    fflush(stdout);
    free(names);
  }
  MPI_Finalize();
  return (fails || all_fails) ? 1 : 0;
}
