/*
 * One rank of the fault tests, started by ciuic-run; uses only the public C API.
 *
 *   fault_rank die <count> <victim> <delay_us>
 *       allreduce <count> float32 in a loop; after the first one completes, <victim>
 *       SIGKILLs itself <delay_us> later, in the middle of a later allreduce.
 *   fault_rank absent <count> <absent>
 *       <absent> initialises but never calls the allreduce the others call.
 *   fault_rank idle <count> <sleep_ms>
 *       one allreduce, then <sleep_ms> idle, then another: a fault while the connections
 *       are idle must fail the second one fast (keepalive), not at its deadline.
 *   fault_rank loop <count> <iters>
 *       allreduce <count> float32 <iters> times, each result checked; the faults come
 *       from outside (a link set down, packet loss, SIGSTOP: tests/fault/netns_faults.py).
 *
 * Every rank that sees an error prints one line, then exits 3:
 *   RESULT rank=R code=C iter=I start_ns=S end_ns=E msg=<ciuic_comm_get_last_error>
 * The victim prints "KILL rank=R at_ns=T" just before it dies. Times are CLOCK_MONOTONIC,
 * shared by every process on the machine.
 */
#include <ciuic/ciuic.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int g_rank = -1;
static long g_delay_us = 0;

static void* kill_later(void* unused) {
  (void)unused;
  usleep((useconds_t)g_delay_us);
  printf("KILL rank=%d at_ns=%lld\n", g_rank, now_ns());
  fflush(stdout);
  raise(SIGKILL);
  return NULL;
}

static int report(ciuic_comm_t comm, ciuic_result_t code, int iter, long long start_ns) {
  long long end_ns = now_ns();
  printf("RESULT rank=%d code=%d iter=%d start_ns=%lld end_ns=%lld msg=%s\n", g_rank, (int)code, iter,
         start_ns, end_ns, ciuic_comm_get_last_error(comm));
  fflush(stdout);
  ciuic_comm_destroy(comm);
  return code == CIUIC_SUCCESS ? 0 : 3;
}

int main(int argc, char** argv) {
  if (argc < 4 ||
      (strcmp(argv[1], "die") != 0 && strcmp(argv[1], "absent") != 0 && strcmp(argv[1], "loop") != 0 &&
       strcmp(argv[1], "idle") != 0) ||
      (strcmp(argv[1], "die") == 0 && argc < 5)) {
    fprintf(stderr,
            "usage: fault_rank die <count> <victim> <delay_us> | absent <count> <absent> | "
            "loop <count> <iters> | idle <count> <sleep_ms>\n");
    return 2;
  }
  const int die = strcmp(argv[1], "die") == 0;
  const int loop = strcmp(argv[1], "loop") == 0;
  const int idle = strcmp(argv[1], "idle") == 0;
  const size_t count = (size_t)strtoull(argv[2], NULL, 10);
  const int special = atoi(argv[3]);
  if (die) g_delay_us = atol(argv[4]);

  ciuic_comm_t comm = NULL;
  if (ciuic_comm_init_env(&comm) != CIUIC_SUCCESS) {
    fprintf(stderr, "init failed: %s\n", ciuic_comm_get_last_error(NULL));
    return 1;
  }
  int nranks = 0;
  ciuic_comm_rank(comm, &g_rank);
  ciuic_comm_size(comm, &nranks);

  float* send = malloc(count * sizeof(float));
  float* recv = malloc(count * sizeof(float));
  if (send == NULL || recv == NULL) return 1;
  for (size_t i = 0; i < count; ++i) send[i] = (float)(g_rank + 1);

  if (!die && !loop && !idle && g_rank == special) {
    /* Alive, connected to the bootstrap, but never joins: sleep until the others are done. */
    sleep(30);
    ciuic_comm_destroy(comm);
    return 0;
  }
  const int iters = loop ? special : idle ? 2 : 1000;
  const long long loop_start_ns = now_ns();
  for (int iter = 0; iter < iters; ++iter) {
    if (die && iter == 1 && g_rank == special) {
      pthread_t killer;
      pthread_create(&killer, NULL, kill_later, NULL);
    }
    if (idle && iter == 1) {
      printf("IDLE rank=%d\n", g_rank); /* the driver injects its fault after every rank says this */
      fflush(stdout);
      usleep((useconds_t)special * 1000);
    }
    long long start_ns = now_ns();
    ciuic_result_t r = ciuic_allreduce(send, recv, count, CIUIC_FLOAT32, CIUIC_SUM, comm, NULL);
    if (r != CIUIC_SUCCESS) return report(comm, r, iter, start_ns);
    const float want = (float)(nranks * (nranks + 1) / 2);
    if (recv[0] != want || recv[count - 1] != want) {
      fprintf(stderr, "rank %d: wrong sum %f (want %f)\n", g_rank, recv[0], want);
      return 4;
    }
    if (!die && !loop && !idle) return report(comm, CIUIC_SUCCESS, iter, start_ns);
  }
  return report(comm, CIUIC_SUCCESS, iters, (loop || idle) ? loop_start_ns : now_ns());
}
