/*
 * A data-parallel training loop reduced to its communication: every rank computes
 * "gradients", averages them with every other rank (ciuic_allreduce with CIUIC_AVG, in
 * place), checks the result, and prints one line.
 *
 * Launch it with any launcher ciuic understands (see README.md):
 *   ciuic-run -n 4 ./trainer
 *   mpirun -np 4 -x CIUIC_ROOT=127.0.0.1:29500 ./trainer
 *   torchrun --nproc-per-node 4 --no-python ./trainer
 */
#include <ciuic/ciuic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define NUM_GRADIENTS (1u << 20)
#define NUM_STEPS 5

/* What rank `rank` computes at step `step` for parameter i: small integers, so the
 * average over ranks is known exactly. */
static float gradient(int rank, int step, size_t i) { return (float)(rank + step + (int)(i % 7)); }

int main(void) {
  ciuic_comm_t comm = NULL;
  if (ciuic_comm_init_env(&comm) != CIUIC_SUCCESS) {
    fprintf(stderr, "trainer: cannot join the job: %s\n", ciuic_comm_get_last_error(NULL));
    return 1;
  }
  int rank = 0, nranks = 0;
  ciuic_comm_rank(comm, &rank);
  ciuic_comm_size(comm, &nranks);

  float* grads = malloc(NUM_GRADIENTS * sizeof(float));
  if (grads == NULL) return 1;
  double worst = 0;
  int failed = 0;
  for (int step = 0; step < NUM_STEPS && !failed; ++step) {
    for (size_t i = 0; i < NUM_GRADIENTS; ++i) grads[i] = gradient(rank, step, i);
    ciuic_result_t r = ciuic_allreduce(CIUIC_IN_PLACE, grads, NUM_GRADIENTS, CIUIC_FLOAT32, CIUIC_AVG,
                                       comm, NULL);
    if (r != CIUIC_SUCCESS) {
      fprintf(stderr, "trainer: rank %d step %d: %s: %s\n", rank, step, ciuic_result_string(r),
              ciuic_comm_get_last_error(comm));
      failed = 2;
      break;
    }
    /* mean over ranks of (rank + step + i % 7) */
    for (size_t i = 0; i < NUM_GRADIENTS; ++i) {
      double want = (nranks - 1) / 2.0 + step + (double)(i % 7);
      double err = fabs(grads[i] - want);
      if (err > worst) worst = err;
    }
    if (worst > 1e-5) failed = 1;
  }
  printf("rank %d/%d: %d steps of %u gradients averaged, max error %.1e: %s\n", rank, nranks, NUM_STEPS,
         NUM_GRADIENTS, worst, failed == 0 ? "OK" : failed == 1 ? "WRONG" : "FAILED");
  fflush(stdout);
  free(grads);
  ciuic_comm_destroy(comm);
  return failed ? 1 : 0;
}
