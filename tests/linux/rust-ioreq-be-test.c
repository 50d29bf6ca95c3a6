//! rust-ioreq-be-test: checks /dev/rust-ioreq-be from userspace, then serves device 0 as a virtio-rng (scenario linux-backend-probe).
/*
 * Runs in the Linux backend domain's initramfs (tests/linux/backend-init), after insmod of
 * rust-ioreq-be.ko. Prints `SCENARIO <name> PASS|FAIL <check> <detail>` lines:
 *   layout       /sys/class/misc/rust-ioreq-be/layout parses: regions, frontends, devices
 *   doorbell     MAGIC and VERSION read through the Device mapping of the doorbell
 *   mmap         every region of the layout maps (ioreq/transport/notify/RAM: Normal WB)
 *   mmap-refused the module refuses a range of a RAM window outside the frontend's banks, and
 *                a private mapping
 *   irq-read     a non-blocking read of the notify count returns 8 bytes
 *   restrict     a file restricted to frontend 0 (ioctl RIOREQ_BE_RESTRICT, what a vhost-user
 *                daemon gets) maps frontend 0's RAM and is refused (EPERM) the doorbell, the
 *                ioreq page, the transport page and read(); a second restriction is refused
 *                (EPERM), one to a frontend that does not exist too (EINVAL)
 *   fast         (when Xen offers the fast transport) the transport records published
 *   posted-notify a fast device's first notify seen on the notify page (FAIL if one arrives
 *                as a round trip)
 *   online       ONLINE written; then the first round trip it answers
 *   rng-request  the first two virtio-rng requests it serves per device (bytes written into the
 *                frontend's RAM through the window; a fast device's requests found through its
 *                notify count), then END once every rng device has had two
 * and keeps serving afterwards (the frontend may still be running). On a setup failure it
 * prints FAIL and END and exits non-zero.
 *
 * What it serves: every device whose args start with "virtio-rng" as a virtio-mmio 1.x entropy
 * device with one split virtqueue, bytes from getrandom(). A classic device (`classic=1` in the
 * layout) is served by round trips alone; the others, when the doorbell's FEATURES bit 0 offers
 * the fast transport of version 2, get a published transport record (Xen then answers the
 * transport registers and posts QueueNotify to the notify page). Other devices answer all ones
 * to reads and drop writes. It is a test program, not the daemon of issue 10
 * (rust-ioreq-backend, which will use the virtio-device crate).
 *
 * Memory: a slot is read once (its fields copied out after the state byte, with an acquire
 * fence), validated, then answered; ring fields in the frontend's RAM are read once each and
 * checked against the frontend's RAM banks before any access.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define DEV_PATH "/dev/rust-ioreq-be"
#define LAYOUT_PATH "/sys/class/misc/rust-ioreq-be/layout"

/* The module's ioctl (tests/linux/rust-ioreq-be/rust-ioreq-be.c; docs/backend-abi.md). */
#define RIOREQ_BE_RESTRICT _IOW('r', 0x01, int32_t)
_Static_assert(RIOREQ_BE_RESTRICT == 0x40047201, "RIOREQ_BE_RESTRICT is ABI");

#define DB_MAGIC 0x00
#define DB_VERSION 0x04
#define DB_FEATURES 0x08
#define DB_COMPLETE 0x10
#define DB_RAISE_IRQ 0x14
#define DB_ONLINE 0x18
#define DB_MAGIC_VALUE 0x716f6972u

#define STATE_READY 1
#define STATE_IORESP_READY 3
#define IOREQ_TYPE_COPY 1

/* virtio-mmio registers (virtio 1.2 §4.2.2). */
#define R_MAGIC 0x000
#define R_VERSION 0x004
#define R_DEVICE_ID 0x008
#define R_VENDOR_ID 0x00c
#define R_DEVICE_FEATURES 0x010
#define R_DEVICE_FEATURES_SEL 0x014
#define R_DRIVER_FEATURES 0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_INTERRUPT_STATUS 0x060
#define R_INTERRUPT_ACK 0x064
#define R_STATUS 0x070
#define R_QUEUE_DESC_LOW 0x080
#define R_QUEUE_DESC_HIGH 0x084
#define R_QUEUE_DRIVER_LOW 0x090
#define R_QUEUE_DRIVER_HIGH 0x094
#define R_QUEUE_DEVICE_LOW 0x0a0
#define R_QUEUE_DEVICE_HIGH 0x0a4
#define R_SHM_LEN_LOW 0x0b0
#define R_SHM_LEN_HIGH 0x0b4
#define R_CONFIG_GENERATION 0x0fc

#define VIRTIO_MAGIC 0x74726976u
#define VIRTIO_ID_RNG 4
#define VENDOR_ID 0x514f4952u /* "RIOQ" */
#define STATUS_FEATURES_OK 8
#define FEATURE_VERSION_1_HIGH 1u /* bit 32: bit 0 of feature word 1 */
#define QUEUE_NUM_MAX 64
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define MAX_BYTES_PER_REQUEST 4096

#define MAX_REGIONS 160
#define MAX_FRONTENDS 8
#define MAX_DEVICES 64

static const char *scenario = "linux-backend-probe";
static int failures;

static void check(bool ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("SCENARIO %s %s %s ", scenario, ok ? "PASS" : "FAIL", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
		failures++;
}

struct region {
	char kind[16];
	int frontend;
	uint64_t phys, size, gpa;
	bool device;
	volatile uint8_t *map;
};

struct device {
	unsigned index, frontend;
	uint64_t mmio, size;
	char args[128];
	/* virtio-mmio state of a served rng */
	bool rng, classic, fast;
	uint32_t notified; /* the notify count of queue 0 last handled (fast devices) */
	unsigned posted; /* times that count was seen to move */
	uint32_t dev_features_sel, drv_features_sel, drv_features[2], queue_sel, status, isr;
	uint32_t queue_num, queue_ready;
	uint64_t desc, avail, used;
	uint16_t last_avail;
	unsigned served;
};

static struct region regions[MAX_REGIONS];
static unsigned nr_regions;
static struct device devices[MAX_DEVICES];
static unsigned nr_devices;
static unsigned frontend_vcpus[MAX_FRONTENDS];
static uint64_t frontend_ioreq[MAX_FRONTENDS];
static unsigned nr_frontends;
static volatile uint8_t *doorbell;
static volatile uint8_t *transport, *notify;
static unsigned rng_devices, rng_requests;

/* Doorbell accesses: one 32-bit LDR/STR with a plain base register (a valid syndrome for Xen). */
static uint32_t db_read(unsigned off)
{
	uint32_t v;

	__asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(doorbell + off) : "memory");
	return v;
}

static void db_write(unsigned off, uint32_t v)
{
	__asm__ volatile("str %w0, [%1]" : : "rZ"(v), "r"(doorbell + off) : "memory");
}

static void dmb_ish(void)
{
	__asm__ volatile("dmb ish" ::: "memory");
}

static int parse_layout(void)
{
	char line[512];
	FILE *f = fopen(LAYOUT_PATH, "r");

	if (!f) {
		check(false, "layout", "open %s: %s", LAYOUT_PATH, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		struct region *r = &regions[nr_regions];
		struct device *d = &devices[nr_devices];
		char type[16];
		unsigned idx, vcpus;
		uint64_t ioreq;
		int pos = 0, classic = 0;

		line[strcspn(line, "\n")] = 0;
		printf("backend: layout: %s\n", line);
		if (nr_regions < MAX_REGIONS &&
		    sscanf(line, "region %15s frontend=%d phys=%" SCNx64 " size=%" SCNx64 " gpa=%" SCNx64 " type=%15s",
			   r->kind, &r->frontend, &r->phys, &r->size, &r->gpa, type) == 6) {
			r->device = strcmp(type, "device") == 0;
			nr_regions++;
		} else if (sscanf(line, "frontend %u vcpus=%u ioreq=%" SCNx64, &idx, &vcpus, &ioreq) == 3 &&
			   idx < MAX_FRONTENDS) {
			frontend_vcpus[idx] = vcpus;
			frontend_ioreq[idx] = ioreq;
			if (idx + 1 > nr_frontends)
				nr_frontends = idx + 1;
		} else if (nr_devices < MAX_DEVICES &&
			   sscanf(line, "device %u frontend=%u mmio=%" SCNx64 " size=%" SCNx64 " classic=%d args=%n",
				  &d->index, &d->frontend, &d->mmio, &d->size, &classic, &pos) == 5 && pos > 0) {
			snprintf(d->args, sizeof(d->args), "%s", line + pos);
			d->rng = strncmp(d->args, "virtio-rng", 10) == 0;
			d->classic = classic;
			rng_devices += d->rng;
			nr_devices++;
		}
	}
	fclose(f);
	check(nr_regions >= 3 && nr_frontends >= 1 && nr_devices >= 1, "layout",
	      "%u regions, %u frontend(s), %u device(s)", nr_regions, nr_frontends, nr_devices);
	return nr_regions >= 3 && nr_frontends >= 1 && nr_devices >= 1 ? 0 : -1;
}

static struct region *find_region(const char *kind, int frontend, uint64_t phys)
{
	for (unsigned i = 0; i < nr_regions; i++)
		if (!strcmp(regions[i].kind, kind) && regions[i].frontend == frontend &&
		    (phys == UINT64_MAX || regions[i].phys == phys))
			return &regions[i];
	return NULL;
}

/* Returns where frontend `fe`'s guest range [gpa, gpa + len) is mapped, or NULL if it is not
 * wholly inside one of its RAM banks. */
static volatile uint8_t *guest_ptr(unsigned fe, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < nr_regions; i++) {
		struct region *r = &regions[i];

		if (strcmp(r->kind, "ram") || r->frontend != (int)fe)
			continue;
		if (gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len)
			return r->map + (gpa - r->gpa);
	}
	return NULL;
}

static int map_all(int fd)
{
	for (unsigned i = 0; i < nr_regions; i++) {
		struct region *r = &regions[i];
		void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)r->phys);

		if (p == MAP_FAILED) {
			check(false, "mmap", "%s of frontend %d at %#" PRIx64 " (+%#" PRIx64 "): %s",
			      r->kind, r->frontend, r->phys, r->size, strerror(errno));
			return -1;
		}
		r->map = p;
	}
	check(true, "mmap", "%u regions mapped (doorbell Device, the rest Normal WB)", nr_regions);
	return 0;
}

/* The module must refuse what is not a region: the window past frontend 0's banks, and a
 * private mapping of a region. */
static void check_refusals(int fd)
{
	struct region *ram = find_region("ram", 0, UINT64_MAX);
	uint64_t window_end_page;
	void *p, *q;
	int e1, e2;

	if (!ram) {
		check(false, "mmap-refused", "no RAM bank of frontend 0 in the layout");
		return;
	}
	/* The last page of the 64 GiB window: no bank of a 64 MiB frontend is there. */
	window_end_page = (ram->phys - ram->gpa) + 0x1000000000ull - 0x1000;
	p = mmap(NULL, 0x1000, PROT_READ, MAP_SHARED, fd, (off_t)window_end_page);
	e1 = errno;
	q = mmap(NULL, 0x1000, PROT_READ, MAP_PRIVATE, fd, (off_t)ram->phys);
	e2 = errno;
	check(p == MAP_FAILED && e1 == EINVAL && q == MAP_FAILED && e2 == EINVAL, "mmap-refused",
	      "window page %#" PRIx64 ": %s; private mapping: %s", window_end_page,
	      p == MAP_FAILED ? strerror(e1) : "MAPPED", q == MAP_FAILED ? strerror(e2) : "MAPPED");
	if (p != MAP_FAILED)
		munmap(p, 0x1000);
	if (q != MAP_FAILED)
		munmap(q, 0x1000);
}

/* Maps one page of `fd` at `phys`; returns 0 or the errno of the refusal. */
static int map_errno(int fd, uint64_t phys)
{
	void *p = mmap(NULL, 0x1000, PROT_READ, MAP_SHARED, fd, (off_t)phys);

	if (p == MAP_FAILED)
		return errno;
	munmap(p, 0x1000);
	return 0;
}

/* A file restricted to frontend 0 (what the vhost-user bridge gives a vhost-user daemon) maps
 * that frontend's RAM and nothing else. */
static void check_restrict(void)
{
	struct region *ram = find_region("ram", 0, UINT64_MAX);
	struct region *db = find_region("doorbell", -1, UINT64_MAX);
	struct region *ioreq = find_region("ioreq", 0, UINT64_MAX);
	struct region *transport = find_region("transport", -1, UINT64_MAX);
	int32_t fe0 = 0, nobody = 1000;
	int fd = open(DEV_PATH, O_RDWR), other = open(DEV_PATH, O_RDWR);
	int e_ram, e_db, e_ioreq, e_transport, e_again, e_nobody, e_read;
	uint64_t count;

	if (fd < 0 || other < 0 || !ram || !db || !ioreq) {
		check(false, "restrict", "open: %s, or no ram/doorbell/ioreq region", strerror(errno));
		goto out;
	}
	if (ioctl(fd, RIOREQ_BE_RESTRICT, &fe0)) {
		check(false, "restrict", "ioctl(RIOREQ_BE_RESTRICT, 0): %s", strerror(errno));
		goto out;
	}
	e_ram = map_errno(fd, ram->phys);
	e_db = map_errno(fd, db->phys);
	e_ioreq = map_errno(fd, ioreq->phys);
	e_transport = transport ? map_errno(fd, transport->phys) : EPERM;
	e_read = read(fd, &count, 8) < 0 ? errno : 0;
	e_again = ioctl(fd, RIOREQ_BE_RESTRICT, &fe0) ? errno : 0;
	e_nobody = ioctl(other, RIOREQ_BE_RESTRICT, &nobody) ? errno : 0;
	check(!e_ram && e_db == EPERM && e_ioreq == EPERM && e_transport == EPERM &&
		      e_read == EPERM && e_again == EPERM && e_nobody == EINVAL,
	      "restrict",
	      "RAM bank: %s; doorbell: %s; ioreq: %s; transport: %s; read: %s; again: %s; "
	      "frontend 1000: %s",
	      e_ram ? strerror(e_ram) : "mapped", strerror(e_db), strerror(e_ioreq),
	      strerror(e_transport), strerror(e_read), strerror(e_again), strerror(e_nobody));
out:
	if (fd >= 0)
		close(fd);
	if (other >= 0)
		close(other);
}

static void device_reset(struct device *d)
{
	d->dev_features_sel = d->drv_features_sel = d->queue_sel = d->status = d->isr = 0;
	d->drv_features[0] = d->drv_features[1] = 0;
	d->queue_num = d->queue_ready = 0;
	d->desc = d->avail = d->used = 0;
	d->last_avail = 0;
}

/* Serves every new buffer of the rng's queue: fills its device-writable descriptors. */
static void rng_process(struct device *d)
{
	unsigned fe = d->frontend, num = d->queue_num;
	volatile uint16_t *avail_idx, *used_idx;
	bool raised = false;

	if (!d->queue_ready || !num)
		return;
	avail_idx = (volatile uint16_t *)guest_ptr(fe, d->avail + 2, 2);
	used_idx = (volatile uint16_t *)guest_ptr(fe, d->used + 2, 2);
	if (!avail_idx || !used_idx || !guest_ptr(fe, d->avail, 4 + 2ull * num) ||
	    !guest_ptr(fe, d->used, 4 + 8ull * num) || !guest_ptr(fe, d->desc, 16ull * num)) {
		printf("backend: dev%u: a ring is outside frontend %u's RAM: queue not served\n",
		       d->index, fe);
		return;
	}
	for (;;) {
		uint16_t avail = *avail_idx, used, head, idx;
		uint32_t written = 0;
		unsigned hops;

		dmb_ish(); /* ring entries after the index */
		if (avail == d->last_avail)
			break;
		head = *(volatile uint16_t *)guest_ptr(fe, d->avail + 4 + 2ull * (d->last_avail % num), 2);
		idx = head;
		for (hops = 0; hops < num && idx < num; hops++) {
			volatile uint8_t *desc = guest_ptr(fe, d->desc + 16ull * idx, 16);
			uint64_t addr = *(volatile uint64_t *)desc;
			uint32_t len = *(volatile uint32_t *)(desc + 8);
			uint16_t flags = *(volatile uint16_t *)(desc + 12);
			uint16_t next = *(volatile uint16_t *)(desc + 14);
			uint8_t bytes[MAX_BYTES_PER_REQUEST];
			uint32_t n = len;
			volatile uint8_t *dst;

			if (n > MAX_BYTES_PER_REQUEST - written)
				n = MAX_BYTES_PER_REQUEST - written;
			dst = (flags & DESC_F_WRITE) ? guest_ptr(fe, addr, n) : NULL;
			if (n && dst && getrandom(bytes, n, 0) == (ssize_t)n) {
				for (uint32_t i = 0; i < n; i++)
					dst[i] = bytes[i];
				written += n;
			}
			if (!(flags & DESC_F_NEXT))
				break;
			idx = next;
		}
		used = *used_idx;
		volatile uint8_t *elem = guest_ptr(fe, d->used + 4 + 8ull * (used % num), 8);
		*(volatile uint32_t *)elem = head;
		*(volatile uint32_t *)(elem + 4) = written;
		d->last_avail++;
		d->served++;
		rng_requests++;
		if (d->served <= 2)
			check(written > 0, "rng-request",
			      "dev%u (%s): request %u (descriptor %u) given %u random bytes", d->index,
			      d->fast ? "fast" : "round trips", d->served, head, written);
		if (rng_requests == 2 * rng_devices)
			printf("SCENARIO %s END\n", scenario);
		dmb_ish(); /* the element before the index */
		*used_idx = (uint16_t)(used + 1);
		raised = true;
	}
	if (raised) {
		/* A fast device's InterruptStatus is Xen's: the cause (bit 16, used buffer) sets it. */
		d->isr |= 1;
		dmb_ish(); /* used ring writes before the interrupt (docs/backend-abi.md) */
		db_write(DB_RAISE_IRQ, d->index | (d->fast ? 1u << 16 : 0));
	}
}

static uint64_t mmio_read(struct device *d, uint64_t off, uint32_t size)
{
	if (!d->rng)
		return ~0ull;
	if (off >= 0x100)
		return 0; /* no configuration space */
	if (size != 4)
		return 0;
	switch (off) {
	case R_MAGIC: return VIRTIO_MAGIC;
	case R_VERSION: return 2;
	case R_DEVICE_ID: return VIRTIO_ID_RNG;
	case R_VENDOR_ID: return VENDOR_ID;
	case R_DEVICE_FEATURES: return d->dev_features_sel == 1 ? FEATURE_VERSION_1_HIGH : 0;
	case R_QUEUE_NUM_MAX: return d->queue_sel == 0 ? QUEUE_NUM_MAX : 0;
	case R_QUEUE_READY: return d->queue_sel == 0 ? d->queue_ready : 0;
	case R_INTERRUPT_STATUS: return d->isr;
	case R_STATUS: return d->status;
	case R_SHM_LEN_LOW:
	case R_SHM_LEN_HIGH: return 0xffffffffu; /* no shared memory region */
	case R_CONFIG_GENERATION: return 0;
	default: return 0;
	}
}

static void set_low(uint64_t *v, uint32_t x) { *v = (*v & ~0xffffffffull) | x; }
static void set_high(uint64_t *v, uint32_t x) { *v = (*v & 0xffffffffull) | ((uint64_t)x << 32); }

static void mmio_write(struct device *d, uint64_t off, uint32_t size, uint32_t v)
{
	bool q0;

	if (!d->rng || off >= 0x100 || size != 4)
		return;
	q0 = d->queue_sel == 0;
	switch (off) {
	case R_DEVICE_FEATURES_SEL: d->dev_features_sel = v; break;
	case R_DRIVER_FEATURES: if (d->drv_features_sel < 2) d->drv_features[d->drv_features_sel] = v; break;
	case R_DRIVER_FEATURES_SEL: d->drv_features_sel = v; break;
	case R_QUEUE_SEL: d->queue_sel = v; break;
	case R_QUEUE_NUM: if (q0 && v >= 1 && v <= QUEUE_NUM_MAX) d->queue_num = v; break;
	case R_QUEUE_READY: if (q0) d->queue_ready = v & 1; break;
	case R_QUEUE_NOTIFY:
		/* A fast device's notifies are posted to the notify page, never a round trip. */
		if (d->fast)
			check(false, "posted-notify", "dev%u: QueueNotify %u arrived as a round trip",
			      d->index, v);
		else if (v == 0)
			rng_process(d);
		break;
	case R_INTERRUPT_ACK: d->isr &= ~v; break;
	case R_STATUS:
		if (v == 0) {
			device_reset(d);
			break;
		}
		/* FEATURES_OK only for VERSION_1 and nothing else (§3.1.1). */
		if ((v & STATUS_FEATURES_OK) && !(d->status & STATUS_FEATURES_OK) &&
		    (d->drv_features[0] != 0 || d->drv_features[1] != FEATURE_VERSION_1_HIGH)) {
			printf("backend: dev%u: driver features %#x:%#x refused\n", d->index,
			       d->drv_features[1], d->drv_features[0]);
			v &= ~STATUS_FEATURES_OK;
		}
		d->status = v;
		break;
	case R_QUEUE_DESC_LOW: if (q0) set_low(&d->desc, v); break;
	case R_QUEUE_DESC_HIGH: if (q0) set_high(&d->desc, v); break;
	case R_QUEUE_DRIVER_LOW: if (q0) set_low(&d->avail, v); break;
	case R_QUEUE_DRIVER_HIGH: if (q0) set_high(&d->avail, v); break;
	case R_QUEUE_DEVICE_LOW: if (q0) set_low(&d->used, v); break;
	case R_QUEUE_DEVICE_HIGH: if (q0) set_high(&d->used, v); break;
	default: break;
	}
}

static unsigned long round_trips;

/* Publishes a transport record for every rng device that is not classic (docs/backend-abi.md,
 * "Transport page"), then the header's version: from then on Xen answers their transport
 * registers and posts their QueueNotify writes. */
static void publish_records(uint32_t features)
{
	struct region *t = find_region("transport", -1, UINT64_MAX);
	struct region *n = find_region("notify", -1, UINT64_MAX);
	unsigned published = 0;

	if (!(features & 1) || !t || !n) {
		printf("backend: no fast transport (FEATURES %#x, pages %s): round trips only\n",
		       features, t && n ? "mapped" : "missing");
		return;
	}
	transport = t->map;
	notify = n->map;
	for (unsigned i = 0; i < nr_devices; i++) {
		struct device *d = &devices[i];
		volatile uint32_t *rec = (volatile uint32_t *)(transport + 0x40 + 0x40 * d->index);

		if (!d->rng || d->classic || d->index >= 63)
			continue;
		rec[1] = VIRTIO_ID_RNG;
		rec[2] = VENDOR_ID;
		rec[3] = 1; /* num_queues */
		rec[4] = QUEUE_NUM_MAX;
		rec[5] = 0; /* config_generation */
		rec[6] = 0; /* device_features[0..3]: VERSION_1 (bit 32) only */
		rec[7] = FEATURE_VERSION_1_HIGH;
		rec[8] = 0;
		rec[9] = 0;
		/* Counts never go back, not even across a device reset: start from the page's. */
		d->notified = *(volatile uint32_t *)(notify + 0x40 * d->index);
		dmb_ish(); /* the record before `published` */
		rec[0] = 1;
		d->fast = true;
		published++;
	}
	dmb_ish();
	*(volatile uint32_t *)transport = 2; /* header version: use this page */
	check(true, "fast", "%u transport record(s) published", published);
}

/* Serves the queues of fast devices whose notify count moved; returns how many moved. */
static unsigned poll_notifies(void)
{
	unsigned moved = 0;

	for (unsigned i = 0; i < nr_devices; i++) {
		struct device *d = &devices[i];
		uint32_t count;

		if (!d->fast)
			continue;
		count = *(volatile uint32_t *)(notify + 0x40 * d->index);
		dmb_ish(); /* ring writes the driver made before its notify */
		if (count == d->notified)
			continue;
		if (!d->posted++)
			check(true, "posted-notify", "dev%u: notify count %u -> %u on the notify page",
			      d->index, d->notified, count);
		d->notified = count;
		moved++;
		rng_process(d);
	}
	return moved;
}

/* Answers every READY slot of every frontend; returns how many. */
static unsigned scan(void)
{
	unsigned answered = 0;

	for (unsigned fe = 0; fe < nr_frontends; fe++) {
		struct region *page = find_region("ioreq", (int)fe, frontend_ioreq[fe]);

		if (!page)
			continue;
		for (unsigned vcpu = 0; vcpu < frontend_vcpus[fe] && vcpu < 128; vcpu++) {
			volatile uint8_t *slot = page->map + 32 * vcpu;
			uint8_t flags = slot[30], type;
			uint64_t addr, data;
			uint32_t size, count;
			bool read, ok;
			struct device *dev = NULL;

			if ((flags & 0xf) != STATE_READY)
				continue;
			dmb_ish(); /* the fields after the state */
			addr = *(volatile uint64_t *)slot;
			data = *(volatile uint64_t *)(slot + 8);
			count = *(volatile uint32_t *)(slot + 16);
			size = *(volatile uint32_t *)(slot + 20);
			type = slot[31];
			read = flags & 0x20;
			ok = type == IOREQ_TYPE_COPY && count == 1 && !(flags & 0x10) &&
			     (size == 1 || size == 2 || size == 4 || size == 8);
			for (unsigned i = 0; ok && i < nr_devices; i++)
				if (devices[i].frontend == fe && addr >= devices[i].mmio &&
				    addr - devices[i].mmio < devices[i].size)
					dev = &devices[i];
			if (!ok || !dev) {
				printf("backend: frontend %u vCPU %u: bad request type %u size %u addr %#" PRIx64 "\n",
				       fe, vcpu, type, size, addr);
				data = ~0ull;
			} else if (read) {
				data = mmio_read(dev, addr - dev->mmio, size);
			} else {
				mmio_write(dev, addr - dev->mmio, size, (uint32_t)data);
			}
			if (++round_trips == 1)
				check(true, "first-request", "frontend %u vCPU %u: %s of %#" PRIx64 " (size %u)",
				      fe, vcpu, read ? "read" : "write", addr, size);
			if (read)
				*(volatile uint64_t *)(slot + 8) = data;
			dmb_ish(); /* the answer before the state */
			slot[30] = (uint8_t)((flags & 0xf0) | STATE_IORESP_READY);
			db_write(DB_COMPLETE, (fe << 16) | vcpu);
			answered++;
		}
	}
	return answered;
}

int main(int argc, char **argv)
{
	struct region *db;
	uint32_t magic, version, features;
	uint64_t count;
	int fd, nb;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1)
		scenario = argv[1];
	fd = open(DEV_PATH, O_RDWR);
	if (fd < 0) {
		check(false, "open", "%s: %s", DEV_PATH, strerror(errno));
		goto fail;
	}
	if (parse_layout() || map_all(fd))
		goto fail;
	db = find_region("doorbell", -1, UINT64_MAX);
	if (!db || !db->device) {
		check(false, "doorbell", "no Device doorbell region in the layout");
		goto fail;
	}
	doorbell = db->map;
	magic = db_read(DB_MAGIC);
	version = db_read(DB_VERSION);
	features = db_read(DB_FEATURES);
	check(magic == DB_MAGIC_VALUE && version >= 1, "doorbell", "MAGIC %#x VERSION %u FEATURES %#x",
	      magic, version, features);
	check_refusals(fd);
	check_restrict();
	nb = open(DEV_PATH, O_RDONLY | O_NONBLOCK);
	check(nb >= 0 && read(nb, &count, 8) == 8, "irq-read", "notify interrupts so far: %" PRIu64,
	      nb >= 0 ? count : 0);
	if (nb >= 0)
		close(nb);
	if (!rng_devices)
		check(false, "device", "no device with args virtio-rng: nothing to serve");
	if (failures)
		goto fail;
	publish_records(features);
	db_write(DB_ONLINE, 1);
	check(true, "online", "serving %u device(s) of %u frontend(s), %u as virtio-rng",
	      nr_devices, nr_frontends, rng_devices);
	for (;;) {
		/* The first read returns at once: the scan at start the ABI asks for. */
		if (read(fd, &count, 8) != 8) {
			check(false, "irq-read", "read: %s", strerror(errno));
			goto fail;
		}
		/* Going idle (docs/backend-abi.md, "Wake-ups"): ask for the SPI at the next posted
		 * notify, then look once more; a notify is either seen here or wakes the read. */
		for (;;) {
			scan();
			poll_notifies();
			if (!transport)
				break;
			*(volatile uint32_t *)(transport + 4) = 1; /* wakeup */
			dmb_ish();
			if (scan() + poll_notifies() == 0)
				break;
		}
	}
fail:
	printf("SCENARIO %s END\n", scenario);
	return 1;
}
