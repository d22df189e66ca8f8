// A stand-in for a node's heap after its sessions ended: how long glibc's
// malloc_trim(0) takes on a large, fragmented heap spread over several
// arenas, a second trim right after it, and the longest a malloc on
// another thread waits meanwhile. The numbers behind MIN_INTERVAL in
// backend/src/memory.rs (docs/benchmarks.md). Not built by cargo:
//   gcc -O2 -pthread bench/c/malloc_trim.c -o /tmp/malloc_trim
//   /tmp/malloc_trim GIB THREADS KEEP_ONE_IN    (e.g. 4 4 4)
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static size_t per_thread; static int keep_every;
static void *fill(void *arg) {
    (void)arg;
    size_t n = per_thread / 2048, kept = 0;
    void **p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) { size_t sz = 256 + (i * 7919) % 3840; p[i] = malloc(sz); memset(p[i], 1, sz); }
    for (size_t i = 0; i < n; i++) if (i % keep_every) free(p[i]); else kept++;
    return NULL; // the kept blocks stay allocated (a live heap)
}
static volatile int stop; static double worst;
static void *probe(void *arg) {
    (void)arg;
    while (!stop) { double t = now(); void *x = malloc(512); memset(x, 2, 512); free(x); double d = now() - t; if (d > worst) worst = d; }
    return NULL;
}
int main(int argc, char **argv) {
    size_t gib = argc > 1 ? atoi(argv[1]) : 2; int threads = argc > 2 ? atoi(argv[2]) : 4; keep_every = argc > 3 ? atoi(argv[3]) : 4;
    per_thread = gib * (1UL << 30) / threads;
    pthread_t t[64];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, fill, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    pthread_t pr; pthread_create(&pr, NULL, probe, NULL);
    struct timespec s = {0, 200000000}; nanosleep(&s, NULL);
    worst = 0;
    double t0 = now(); int r = malloc_trim(0); double dt = now() - t0;
    double t1 = now(); malloc_trim(0); double dt2 = now() - t1;
    nanosleep(&s, NULL); stop = 1; pthread_join(pr, NULL);
    printf("second trim right after: %.1f ms\n", dt2 * 1e3);
    printf("heap %zu GiB over %d threads, 1 in %d blocks kept: malloc_trim %d in %.1f ms; a malloc on another thread waited at most %.2f ms\n", gib, threads, keep_every, r, dt * 1e3, worst * 1e3);
    return 0;
}
