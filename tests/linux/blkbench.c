// blkbench: the Linux part of `make bench` (tests/bench/bench-linux.toml, run by tests/linux/init
// with linuxtest.bench=...): times QD1 O_DIRECT requests on a virtio-blk disk, one at a time.
//
// Usage: blkbench <name> <device> <read|write|verify> <block bytes> <requests> <virtio device>
//
// Each request is one pread/pwrite of <block bytes> on <device> opened with O_DIRECT, so that it
// is exactly one virtio-blk request (the block layer splits nothing up to the disk's
// max_sectors, 1280 KiB by default), waited for before the next one starts (queue depth 1).
// Offsets walk the disk from 0 in steps of <block bytes>, wrapping at its end. 16 unrecorded
// requests warm up first. A write stores a pattern that names the disk block; `verify` reads
// like `read` and also checks every byte it gets against that pattern (so run `write` over the
// same range first). Prints
//   BENCH <name> median_ns=<n> p10_ns=<n> p90_ns=<n> iters=<n> mib_s=<x.xx> iops=<n>
//         irqs_per_req=<x.xx>
// (one line): per-request percentiles of the wall time of each call (CLOCK_MONOTONIC), the
// throughput and rate over the time spent in the recorded calls (their sum: the pattern fill and
// check between two requests are not the device's time), and the interrupts of <virtio device> (its
// /proc/interrupts line, e.g. "virtio0", summed over the CPUs) per recorded request (-1 when
// there is no such line). Exits 1 on any error or mismatch (after a message on stderr), 2 on a
// usage error. Not a test: the caller decides what a PASS is; no time is ever judged here.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 16
#define MAX_REQUESTS 100000
#define MAX_BLOCK (4 << 20)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// The interrupts of the /proc/interrupts line whose last field is `name`, summed; -1 if none.
static long long irq_count(const char *name)
{
    FILE *f = fopen("/proc/interrupts", "r");
    char line[1024];
    long long found = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        char *end = line + strlen(line);
        while (end > line && (end[-1] == '\n' || end[-1] == ' '))
            *--end = '\0';
        char *last = strrchr(line, ' ');
        if (!last || strcmp(last + 1, name) != 0)
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        long long sum = 0;
        char *p = colon + 1;
        for (;;) {
            char *q;
            while (*p == ' ')
                p++;
            long long v = strtoll(p, &q, 10);
            if (q == p || (*q != ' ' && *q != '\0'))
                break;
            sum += v;
            p = q;
        }
        found = sum;
        break;
    }
    fclose(f);
    return found;
}

// The pattern byte at disk offset `at`: different in every 512-byte sector and every byte.
static unsigned char pattern(uint64_t at)
{
    uint64_t sector = at / 512;
    return (unsigned char)((at % 512) * 7 + sector * 13 + (sector >> 8) * 3 + 0x5a);
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: blkbench <name> <device> <read|write|verify> <block bytes> "
                        "<requests> <virtio device>\n");
        return 2;
    }
    const char *name = argv[1], *device = argv[2], *op = argv[3], *virtio = argv[6];
    long block = strtol(argv[4], NULL, 10), requests = strtol(argv[5], NULL, 10);
    int writing = strcmp(op, "write") == 0, verify = strcmp(op, "verify") == 0;
    if ((!writing && !verify && strcmp(op, "read") != 0) || block < 512 || block > MAX_BLOCK ||
        block % 512 != 0 || requests < 1 || requests > MAX_REQUESTS) {
        fprintf(stderr, "blkbench: bad arguments\n");
        return 2;
    }
    int fd = open(device, (writing ? O_WRONLY : O_RDONLY) | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "blkbench: open %s: %s\n", device, strerror(errno));
        return 1;
    }
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0 || size < (uint64_t)block) {
        fprintf(stderr, "blkbench: %s: size %llu (%s)\n", device, (unsigned long long)size,
                strerror(errno));
        return 1;
    }
    uint64_t blocks = size / (uint64_t)block;
    unsigned char *buf;
    if (posix_memalign((void **)&buf, 4096, (size_t)block) != 0) {
        fprintf(stderr, "blkbench: no memory\n");
        return 1;
    }
    uint64_t *lat = calloc((size_t)requests, sizeof *lat);
    if (!lat) {
        fprintf(stderr, "blkbench: no memory\n");
        return 1;
    }
    long long irq0 = 0;
    uint64_t total = 0;
    for (long i = -WARMUP; i < requests; i++) {
        if (i == 0)
            irq0 = irq_count(virtio);
        uint64_t at = ((uint64_t)(i + WARMUP) % blocks) * (uint64_t)block;
        if (writing)
            for (long k = 0; k < block; k++)
                buf[k] = pattern(at + (uint64_t)k);
        uint64_t t0 = now_ns();
        ssize_t n = writing ? pwrite(fd, buf, (size_t)block, (off_t)at)
                            : pread(fd, buf, (size_t)block, (off_t)at);
        uint64_t t1 = now_ns();
        if (n != block) {
            fprintf(stderr, "blkbench: %s at %llu: %zd of %ld bytes (%s)\n", op,
                    (unsigned long long)at, n, block, n < 0 ? strerror(errno) : "short");
            return 1;
        }
        if (verify)
            for (long k = 0; k < block; k++)
                if (buf[k] != pattern(at + (uint64_t)k)) {
                    fprintf(stderr, "blkbench: %s byte %llu is %#x, wrote %#x\n", device,
                            (unsigned long long)(at + (uint64_t)k), buf[k],
                            pattern(at + (uint64_t)k));
                    return 1;
                }
        if (i >= 0) {
            lat[i] = t1 - t0;
            total += t1 - t0;
        }
    }
    long long irq1 = irq_count(virtio);
    close(fd);
    qsort(lat, (size_t)requests, sizeof *lat, by_value);
    double seconds = (double)total / 1e9;
    double irqs = irq0 >= 0 && irq1 >= irq0 ? (double)(irq1 - irq0) / (double)requests : -1.0;
    printf("BENCH %s median_ns=%llu p10_ns=%llu p90_ns=%llu iters=%ld mib_s=%.2f iops=%.0f "
           "irqs_per_req=%.2f\n",
           name, (unsigned long long)lat[(requests - 1) * 50 / 100],
           (unsigned long long)lat[(requests - 1) * 10 / 100],
           (unsigned long long)lat[(requests - 1) * 90 / 100], requests,
           (double)block * (double)requests / seconds / (1024.0 * 1024.0),
           (double)requests / seconds, irqs);
    return 0;
}
