// blkbench: the Linux part of `make bench` (tests/bench/bench-linux.toml, run by tests/linux/init
// with linuxtest.bench=...): times QD1 O_DIRECT requests on block devices, one at a time.
//
// Usage: blkbench <block bytes> <requests> <rounds> <row> [<row> ...]
//   <row> = <name>:<read|write|verify>:<device>:<interrupt name or ->
//
// Each request is one pread/pwrite of <block bytes> on <device> opened with O_DIRECT, so that it
// is exactly one block request (the block layer splits nothing up to the disk's max_sectors,
// 1280 KiB by default), waited for before the next one starts (queue depth 1). Offsets walk the
// device from 0 in steps of <block bytes>, wrapping at its end. The rows take turns: <rounds>
// rounds, in each of which every row makes its share of <requests> in turn, so that a change of
// load on the host spreads over all of them; 16 unrecorded requests per row warm up first. A
// write stores a pattern that names the disk block; `verify` reads like `read` and also checks
// every byte it gets against that pattern (so write the same range first).
//
// Prints, per row, one line (kept under ~120 characters: Xen's vpl011 splits longer ones)
//   BENCH <name> median_ns=<n> p10_ns=<n> p90_ns=<n> iters=<n> mib_s=<x> iops=<n> irqs=<x> warmup=16
// with the per-request percentiles of the wall time of each call (CLOCK_MONOTONIC), the
// throughput and rate over the time spent in the recorded calls (their sum: the pattern fill and
// check between requests are not the device's time), and the interrupts of the row's interrupt
// name (its /proc/interrupts line, e.g. "virtio0", summed over the CPUs) per recorded request,
// counted over the row's own turns only (-1 when there is no such line). Exits 1 on any error or
// mismatch (after a message on stderr), 2 on a usage error. Not a test: the caller decides what
// a PASS is; no time is ever judged here.
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
#define MAX_ROUNDS 64
#define MAX_ROWS 8
#define MAX_BLOCK (4 << 20)

enum op { OP_READ, OP_WRITE, OP_VERIFY };

struct row {
    const char *name, *device, *irq;
    enum op op;
    int fd;
    uint64_t blocks, next, total_ns;
    long long irqs;
    int irqs_known;
    uint64_t *lat;
    long done;
};

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

// Makes `count` requests of row `r`, recording them unless `warmup`; 0 on success.
static int run(struct row *r, long count, int warmup, unsigned char *buf, long block)
{
    long long irq0 = r->irqs_known ? irq_count(r->irq) : -1;
    for (long i = 0; i < count; i++) {
        uint64_t at = (r->next++ % r->blocks) * (uint64_t)block;
        if (r->op == OP_WRITE)
            for (long k = 0; k < block; k++)
                buf[k] = pattern(at + (uint64_t)k);
        uint64_t t0 = now_ns();
        ssize_t n = r->op == OP_WRITE ? pwrite(r->fd, buf, (size_t)block, (off_t)at)
                                      : pread(r->fd, buf, (size_t)block, (off_t)at);
        uint64_t t1 = now_ns();
        if (n != block) {
            fprintf(stderr, "blkbench: %s at %llu: %zd of %ld bytes (%s)\n", r->device,
                    (unsigned long long)at, n, block, n < 0 ? strerror(errno) : "short");
            return 1;
        }
        if (r->op == OP_VERIFY)
            for (long k = 0; k < block; k++)
                if (buf[k] != pattern(at + (uint64_t)k)) {
                    fprintf(stderr, "blkbench: %s byte %llu is %#x, wrote %#x\n", r->device,
                            (unsigned long long)(at + (uint64_t)k), buf[k],
                            pattern(at + (uint64_t)k));
                    return 1;
                }
        if (!warmup) {
            r->lat[r->done++] = t1 - t0;
            r->total_ns += t1 - t0;
        }
    }
    if (!warmup && r->irqs_known) {
        long long irq1 = irq_count(r->irq);
        if (irq0 < 0 || irq1 < irq0)
            r->irqs_known = 0;
        else
            r->irqs += irq1 - irq0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc - 4 > MAX_ROWS) {
        fprintf(stderr, "usage: blkbench <block bytes> <requests> <rounds> "
                        "<name>:<read|write|verify>:<device>:<irq name or -> ...\n");
        return 2;
    }
    long block = strtol(argv[1], NULL, 10), requests = strtol(argv[2], NULL, 10);
    long rounds = strtol(argv[3], NULL, 10);
    if (block < 512 || block > MAX_BLOCK || block % 512 != 0 || requests < 1 ||
        requests > MAX_REQUESTS || rounds < 1 || rounds > MAX_ROUNDS || rounds > requests) {
        fprintf(stderr, "blkbench: bad block size, request count or rounds\n");
        return 2;
    }
    struct row rows[MAX_ROWS];
    int nrows = argc - 4;
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        char *spec = argv[4 + i];
        char *op = strchr(spec, ':');
        char *dev = op ? strchr(op + 1, ':') : NULL;
        char *irq = dev ? strchr(dev + 1, ':') : NULL;
        if (!irq) {
            fprintf(stderr, "blkbench: bad row %s\n", spec);
            return 2;
        }
        *op++ = *dev++ = *irq++ = '\0';
        memset(r, 0, sizeof *r);
        r->name = spec;
        r->device = dev;
        r->irq = irq;
        r->irqs_known = strcmp(irq, "-") != 0;
        if (strcmp(op, "read") == 0)
            r->op = OP_READ;
        else if (strcmp(op, "write") == 0)
            r->op = OP_WRITE;
        else if (strcmp(op, "verify") == 0)
            r->op = OP_VERIFY;
        else {
            fprintf(stderr, "blkbench: bad operation %s\n", op);
            return 2;
        }
        r->fd = open(dev, (r->op == OP_WRITE ? O_WRONLY : O_RDONLY) | O_DIRECT);
        if (r->fd < 0) {
            fprintf(stderr, "blkbench: open %s: %s\n", dev, strerror(errno));
            return 1;
        }
        uint64_t size = 0;
        if (ioctl(r->fd, BLKGETSIZE64, &size) != 0 || size < (uint64_t)block) {
            fprintf(stderr, "blkbench: %s: size %llu (%s)\n", dev, (unsigned long long)size,
                    strerror(errno));
            return 1;
        }
        r->blocks = size / (uint64_t)block;
        r->lat = calloc((size_t)requests, sizeof *r->lat);
        if (!r->lat) {
            fprintf(stderr, "blkbench: no memory\n");
            return 1;
        }
    }
    unsigned char *buf;
    if (posix_memalign((void **)&buf, 4096, (size_t)block) != 0) {
        fprintf(stderr, "blkbench: no memory\n");
        return 1;
    }
    for (int i = 0; i < nrows; i++)
        if (run(&rows[i], WARMUP, 1, buf, block))
            return 1;
    for (long round = 0; round < rounds; round++)
        for (int i = 0; i < nrows; i++) {
            long from = requests * round / rounds, to = requests * (round + 1) / rounds;
            if (run(&rows[i], to - from, 0, buf, block))
                return 1;
        }
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        close(r->fd);
        qsort(r->lat, (size_t)requests, sizeof *r->lat, by_value);
        double seconds = (double)r->total_ns / 1e9;
        double irqs = r->irqs_known ? (double)r->irqs / (double)requests : -1.0;
        printf("BENCH %s median_ns=%llu p10_ns=%llu p90_ns=%llu iters=%ld mib_s=%.2f iops=%.0f "
               "irqs=%.2f warmup=%d\n",
               r->name, (unsigned long long)r->lat[(requests - 1) * 50 / 100],
               (unsigned long long)r->lat[(requests - 1) * 10 / 100],
               (unsigned long long)r->lat[(requests - 1) * 90 / 100], requests,
               (double)block * (double)requests / seconds / (1024.0 * 1024.0),
               (double)requests / seconds, irqs, WARMUP);
    }
    return 0;
}
