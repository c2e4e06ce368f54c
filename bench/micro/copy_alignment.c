/* copy_alignment: how fast the kernel copies into user memory, by the destination's offset
 * from a page boundary. pread()s a cached 256 KiB file into one buffer at each offset and
 * prints one JSON line per offset. On AMD Zen the copy into page+1..31 runs about ten times
 * slower than into page+0 or page+32 and beyond, which is why libloop's receive buffers are
 * page-aligned (libloop/src/io/io_buffer.hpp). Nothing here uses libloop.
 *   copy_alignment [ROUNDS]   (default 2000 reads per offset) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  const size_t size = 256 * 1024;
  int rounds = argc > 1 ? atoi(argv[1]) : 2000;
  char path[] = "/tmp/copy_alignment.XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return perror("mkstemp"), 1;
  unlink(path);
  char* src = malloc(size);
  if (!src) return 1;
  memset(src, 7, size);
  if (write(fd, src, size) != (ssize_t)size) return perror("write"), 1;
  free(src);
  char* area = mmap(NULL, size + 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return perror("mmap"), 1;
  memset(area, 1, size + 8192); /* no page faults inside the timing */
  static const int offsets[] = {0, 1, 8, 16, 24, 31, 32, 48, 64, 352, 2048, 4080};
  for (size_t i = 0; i < sizeof offsets / sizeof *offsets; ++i) {
    char* dst = area + offsets[i];
    double t0 = now();
    for (int k = 0; k < rounds; ++k)
      if (pread(fd, dst, size, 0) != (ssize_t)size) return perror("pread"), 1;
    double t1 = now();
    printf("{\"bench\":\"copy_alignment\",\"offset\":%d,\"us_per_256KiB\":%.2f,\"gb_s\":%.2f}\n",
           offsets[i], (t1 - t0) / rounds * 1e6, (double)size * rounds / (t1 - t0) / 1e9);
  }
  close(fd);
  return 0;
}
