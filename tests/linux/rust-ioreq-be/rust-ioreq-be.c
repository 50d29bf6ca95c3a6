//! rust-ioreq-be: the kernel side of a Linux rust-ioreq backend (docs/backend-abi.md, "Linux backend").
// SPDX-License-Identifier: GPL-2.0
/*
 * Binds to the `rust-ioreq,backend-v2` / `-v1` node Xen writes into a backend domain's device
 * tree and gives userspace what a backend needs, with the memory types the ABI asks for:
 *
 *  - mmap of /dev/rust-ioreq-be at offset = the backend guest-physical address of a region:
 *    the doorbell page (Device nGnRE), the ioreq pages, the transport and notify pages and each
 *    frontend RAM bank inside its RAM window (Normal Write-Back, like Xen's and the frontends'
 *    view). A mapping must lie inside one region; anything else is refused (-EINVAL), so no
 *    access can reach an unmapped part of a 64 GiB window from here.
 *  - read() of 8 bytes: the number of notify interrupts so far (u64). It blocks until the count
 *    differs from the one this open file last returned (the first read returns at once), so a
 *    backend that reads, scans every slot, and reads again never misses a request; poll()
 *    reports POLLIN in the same case.
 *  - /sys/class/misc/rust-ioreq-be/layout: the regions, frontends and devices as text, one per
 *    line (format in docs/backend-abi.md).
 *  - ioctl RIOREQ_BE_RESTRICT(frontend index): from then on this open file maps only that
 *    frontend's RAM banks and reads nothing. It is the file the daemon's vhost-user bridge
 *    hands to a vhost-user daemon, which must see that frontend's RAM and nothing else (not
 *    the doorbell, the ioreq pages, the records, nor other frontends' RAM). One way only.
 *
 * Why a module and not /dev/mem or UIO: Debian's 6.1 arm64 kernel maps /dev/mem ranges outside
 * its RAM as Device memory (STRICT_DEVMEM), which is incoherent with Xen's cacheable view on
 * real hardware, and it does not build UIO_PDRV_GENIRQ, so nothing stock gives Normal
 * cacheable mappings of these pages plus the notify interrupt.
 */

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#define DRV_NAME "rust-ioreq-be"

/* Doorbell registers (docs/backend-abi.md, "Doorbell registers"). */
#define DOORBELL_MAGIC 0x00
#define DOORBELL_VERSION 0x04
#define DOORBELL_FEATURES 0x08
#define DOORBELL_MAGIC_VALUE 0x716f6972

/* Restricts an open file to one frontend's RAM banks (argument: s32 frontend index). The
 * number is part of the ABI: rust-ioreq-backend/src/sys.rs checks the same value. */
#define RIOREQ_BE_RESTRICT _IOW('r', 0x01, __s32)
static_assert(RIOREQ_BE_RESTRICT == 0x40047201, "RIOREQ_BE_RESTRICT is ABI (docs/backend-abi.md)");

/* The ABI allows 8 frontends per backend; the rest bound the tables below. */
#define MAX_FRONTENDS 8
#define MAX_BANKS 16
#define MAX_REGIONS (3 + MAX_FRONTENDS * (1 + MAX_BANKS))
#define MAX_DEVICES 64

enum region_type { REGION_DEVICE, REGION_WB };

/* One mmap-able range of the backend's guest-physical space. */
struct be_region {
	const char *kind; /* doorbell, ioreq, transport, notify, ram */
	int frontend; /* -1 for the backend-wide pages */
	phys_addr_t phys;
	resource_size_t size;
	u64 gpa; /* ram: the frontend GPA of the bank's start */
	enum region_type type;
	void *kva; /* the kernel's own WB mapping (memremap), NULL for the doorbell */
};

struct be_frontend {
	u32 index;
	u32 vcpus;
	const char *name;
	u64 ioreq;
	u64 window;
	u64 window_size;
};

struct be_device {
	u32 index;
	u32 frontend;
	u64 mmio;
	u64 mmio_size;
	const char *args;
	bool classic;
};

struct be {
	struct device *dev;
	void __iomem *doorbell;
	u32 version;
	u32 features;
	int irq;
	atomic64_t irq_count;
	wait_queue_head_t wait;
	struct miscdevice misc;
	unsigned int nr_regions, nr_frontends, nr_devices;
	struct be_region regions[MAX_REGIONS];
	struct be_frontend frontends[MAX_FRONTENDS];
	struct be_device devices[MAX_DEVICES];
};

/* One backend node per domain: the misc device name is fixed, so one instance. */
static DEFINE_MUTEX(be_instance_lock);
static struct be *be_instance;

/* Per open file: the interrupt count read() last returned; the frontend it is restricted to
 * (RIOREQ_BE_RESTRICT), or -1. */
struct be_file {
	struct be *be;
	u64 seen;
	atomic_t only_frontend;
};

static irqreturn_t be_notify_irq(int irq, void *data)
{
	struct be *be = data;

	atomic64_inc(&be->irq_count);
	wake_up_interruptible(&be->wait);
	return IRQ_HANDLED;
}

/* Adds a region: claims it in /proc/iomem and maps it WB for the kernel (not the doorbell). */
static int be_add_region(struct be *be, const char *kind, int frontend, u64 phys, u64 size,
			 u64 gpa, enum region_type type)
{
	struct be_region *r;
	const char *label;

	if (be->nr_regions >= MAX_REGIONS) {
		dev_err(be->dev, "more than %d regions\n", MAX_REGIONS);
		return -E2BIG;
	}
	if (!size || !PAGE_ALIGNED(phys) || !PAGE_ALIGNED(size) || phys + size < phys) {
		dev_err(be->dev, "%s of frontend %d: [%#llx, +%#llx) is not whole pages\n", kind,
			frontend, phys, size);
		return -EINVAL;
	}
	r = &be->regions[be->nr_regions];
	r->kind = kind;
	r->frontend = frontend;
	r->phys = phys;
	r->size = size;
	r->gpa = gpa;
	r->type = type;
	r->kva = NULL;
	if (type == REGION_WB) {
		label = frontend < 0 ? devm_kasprintf(be->dev, GFP_KERNEL, DRV_NAME " %s", kind) :
				       devm_kasprintf(be->dev, GFP_KERNEL, DRV_NAME " %s%d", kind,
						      frontend);
		if (!label)
			return -ENOMEM;
		if (!devm_request_mem_region(be->dev, phys, size, label)) {
			dev_err(be->dev, "%s [%#llx, +%#llx) is already claimed\n", label, phys,
				size);
			return -EBUSY;
		}
		/* Normal Write-Back: ioremap_cache() on arm64 for a range outside the kernel's RAM. */
		r->kva = devm_memremap(be->dev, phys, size, MEMREMAP_WB);
		if (IS_ERR(r->kva)) {
			dev_err(be->dev, "memremap(%s, WB) failed: %ld\n", label, PTR_ERR(r->kva));
			return PTR_ERR(r->kva);
		}
	}
	be->nr_regions++;
	return 0;
}

/* Reads the optional two-cell address property `name`; 0 when absent. */
static int be_read_addr(struct be *be, struct device_node *np, const char *name, u64 *out)
{
	int err = of_property_read_u64(np, name, out);

	if (err == -EINVAL) {
		*out = 0;
		return 0;
	}
	if (err)
		dev_err(be->dev, "%pOF: %s is malformed (want two cells)\n", np, name);
	return err;
}

static int be_parse_device(struct be *be, struct be_frontend *fe, struct device_node *np)
{
	struct be_device *d;

	if (be->nr_devices >= MAX_DEVICES) {
		dev_err(be->dev, "more than %d devices\n", MAX_DEVICES);
		return -E2BIG;
	}
	d = &be->devices[be->nr_devices];
	d->frontend = fe->index;
	if (of_property_read_u32(np, "reg", &d->index) ||
	    of_property_read_u64_index(np, "rust-ioreq,mmio", 0, &d->mmio) ||
	    of_property_read_u64_index(np, "rust-ioreq,mmio", 1, &d->mmio_size)) {
		dev_err(be->dev, "%pOF: reg or rust-ioreq,mmio missing or malformed\n", np);
		return -EINVAL;
	}
	if (of_property_read_string(np, "rust-ioreq,args", &d->args))
		d->args = "";
	d->classic = of_property_read_bool(np, "rust-ioreq,classic");
	be->nr_devices++;
	return 0;
}

static int be_parse_frontend(struct be *be, struct device_node *np)
{
	struct be_frontend *fe;
	struct device_node *child;
	int banks, i, err;

	if (be->nr_frontends >= MAX_FRONTENDS) {
		dev_err(be->dev, "more than %d frontends\n", MAX_FRONTENDS);
		return -E2BIG;
	}
	fe = &be->frontends[be->nr_frontends];
	if (of_property_read_u32(np, "reg", &fe->index) ||
	    of_property_read_u32(np, "rust-ioreq,vcpus", &fe->vcpus) ||
	    of_property_read_u64(np, "rust-ioreq,ioreq-page", &fe->ioreq) ||
	    of_property_read_u64_index(np, "rust-ioreq,ram-window", 0, &fe->window) ||
	    of_property_read_u64_index(np, "rust-ioreq,ram-window", 1, &fe->window_size)) {
		dev_err(be->dev, "%pOF: reg, rust-ioreq,vcpus, ioreq-page or ram-window missing or malformed\n",
			np);
		return -EINVAL;
	}
	if (fe->index >= MAX_FRONTENDS) {
		dev_err(be->dev, "%pOF: frontend index %u >= %d\n", np, fe->index, MAX_FRONTENDS);
		return -EINVAL;
	}
	if (of_property_read_string(np, "rust-ioreq,domain-name", &fe->name))
		fe->name = "?";
	be->nr_frontends++;

	err = be_add_region(be, "ioreq", fe->index, fe->ioreq, PAGE_SIZE, 0, REGION_WB);
	if (err)
		return err;

	/* Only the frontend's RAM banks are mapped in its 64 GiB window: map exactly those. */
	banks = of_property_count_u64_elems(np, "rust-ioreq,ram");
	if (banks <= 0 || banks % 2 || banks / 2 > MAX_BANKS) {
		dev_err(be->dev, "%pOF: rust-ioreq,ram malformed or too many banks (%d cells of 64 bits)\n",
			np, banks);
		return -EINVAL;
	}
	for (i = 0; i < banks / 2; i++) {
		u64 gpa, size;

		of_property_read_u64_index(np, "rust-ioreq,ram", 2 * i, &gpa);
		of_property_read_u64_index(np, "rust-ioreq,ram", 2 * i + 1, &size);
		if (gpa + size < gpa || gpa + size > fe->window_size) {
			dev_err(be->dev, "%pOF: RAM bank [%#llx, +%#llx) is outside the %#llx-byte window\n",
				np, gpa, size, fe->window_size);
			return -EINVAL;
		}
		err = be_add_region(be, "ram", fe->index, fe->window + gpa, size, gpa, REGION_WB);
		if (err)
			return err;
	}

	for_each_available_child_of_node(np, child) {
		err = be_parse_device(be, fe, child);
		if (err) {
			of_node_put(child);
			return err;
		}
	}
	return 0;
}

static const struct be_region *be_find_region(struct be *be, u64 start, u64 len)
{
	unsigned int i;

	for (i = 0; i < be->nr_regions; i++) {
		const struct be_region *r = &be->regions[i];

		if (start >= r->phys && len <= r->size && start - r->phys <= r->size - len)
			return r;
	}
	return NULL;
}

static int be_open(struct inode *inode, struct file *file)
{
	struct be_file *bf;

	mutex_lock(&be_instance_lock);
	if (!be_instance) {
		mutex_unlock(&be_instance_lock);
		return -ENODEV;
	}
	bf = kzalloc(sizeof(*bf), GFP_KERNEL);
	if (!bf) {
		mutex_unlock(&be_instance_lock);
		return -ENOMEM;
	}
	bf->be = be_instance;
	/* Never a real count: the first read returns at once (a backend scans once at start). */
	bf->seen = U64_MAX;
	atomic_set(&bf->only_frontend, -1);
	file->private_data = bf;
	mutex_unlock(&be_instance_lock);
	return 0;
}

static int be_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t be_read(struct file *file, char __user *buf, size_t len, loff_t *ppos)
{
	struct be_file *bf = file->private_data;
	struct be *be = bf->be;
	u64 count;
	int err;

	if (len < sizeof(count))
		return -EINVAL;
	if (atomic_read(&bf->only_frontend) >= 0)
		return -EPERM;
	if (file->f_flags & O_NONBLOCK) {
		if ((u64)atomic64_read(&be->irq_count) == bf->seen)
			return -EAGAIN;
	} else {
		err = wait_event_interruptible(be->wait,
					       (u64)atomic64_read(&be->irq_count) != bf->seen);
		if (err)
			return err;
	}
	count = atomic64_read(&be->irq_count);
	if (copy_to_user(buf, &count, sizeof(count)))
		return -EFAULT;
	bf->seen = count;
	return sizeof(count);
}

static __poll_t be_poll(struct file *file, poll_table *wait)
{
	struct be_file *bf = file->private_data;

	if (atomic_read(&bf->only_frontend) >= 0)
		return EPOLLERR;
	poll_wait(file, &bf->be->wait, wait);
	if ((u64)atomic64_read(&bf->be->irq_count) != bf->seen)
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

static int be_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct be_file *bf = file->private_data;
	u64 start = (u64)vma->vm_pgoff << PAGE_SHIFT;
	u64 len = vma->vm_end - vma->vm_start;
	const struct be_region *r;
	int only;

	/* An offset past the 64-bit physical space would wrap in `start`. */
	if (!(vma->vm_flags & VM_SHARED) || vma->vm_pgoff > (U64_MAX >> PAGE_SHIFT))
		return -EINVAL;
	r = be_find_region(bf->be, start, len);
	if (!r)
		return -EINVAL;
	only = atomic_read(&bf->only_frontend);
	if (only >= 0 && (r->frontend != only || strcmp(r->kind, "ram")))
		return -EPERM;
	if (r->type == REGION_DEVICE)
		/* Device nGnRE: every access traps to Xen as a single LDR/STR. */
		vma->vm_page_prot = pgprot_device(vma->vm_page_prot);
	/* REGION_WB keeps the default of a shared mapping: Normal Write-Back Inner Shareable. */
	vma->vm_flags |= VM_IO | VM_DONTEXPAND | VM_DONTDUMP;
	return remap_pfn_range(vma, vma->vm_start, start >> PAGE_SHIFT, len, vma->vm_page_prot);
}

/*
 * The file's size is the end of the highest region, so that a vhost-user backend daemon given
 * this fd (the daemon's vhost-user bridge sends it with the memory table) finds every bank's
 * offset inside the file: rust-vmm's vm-memory checks `offset + size <= seek(SEEK_END)` before
 * it maps. Reads ignore the position.
 */
static loff_t be_llseek(struct file *file, loff_t offset, int whence)
{
	struct be_file *bf = file->private_data;
	u64 end = 0;
	unsigned int i;

	for (i = 0; i < bf->be->nr_regions; i++) {
		const struct be_region *r = &bf->be->regions[i];

		end = max_t(u64, end, (u64)r->phys + r->size);
	}
	return fixed_size_llseek(file, offset, whence, min_t(u64, end, LLONG_MAX));
}

/* RIOREQ_BE_RESTRICT: see the head of this file. Mappings made before it stay. */
static long be_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct be_file *bf = file->private_data;
	unsigned int i;
	s32 frontend;

	if (cmd != RIOREQ_BE_RESTRICT)
		return -ENOTTY;
	if (copy_from_user(&frontend, (void __user *)arg, sizeof(frontend)))
		return -EFAULT;
	for (i = 0; i < bf->be->nr_frontends; i++)
		if (frontend >= 0 && bf->be->frontends[i].index == (u32)frontend)
			break;
	if (i == bf->be->nr_frontends)
		return -EINVAL;
	if (atomic_cmpxchg(&bf->only_frontend, -1, frontend) != -1)
		return -EPERM;
	return 0;
}

static const struct file_operations be_fops = {
	.owner = THIS_MODULE,
	.open = be_open,
	.release = be_release,
	.read = be_read,
	.poll = be_poll,
	.mmap = be_mmap,
	.llseek = be_llseek,
	.unlocked_ioctl = be_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static ssize_t layout_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct miscdevice *misc = dev_get_drvdata(dev);
	struct be *be = container_of(misc, struct be, misc);
	unsigned int i;
	int n;

	n = sysfs_emit(buf, "abi version=%u features=%#x irq=%d\n", be->version, be->features,
		       be->irq);
	for (i = 0; i < be->nr_regions; i++) {
		const struct be_region *r = &be->regions[i];

		n += sysfs_emit_at(buf, n, "region %s frontend=%d phys=%#llx size=%#llx gpa=%#llx type=%s\n",
				   r->kind, r->frontend, (u64)r->phys, (u64)r->size, r->gpa,
				   r->type == REGION_WB ? "wb" : "device");
	}
	for (i = 0; i < be->nr_frontends; i++) {
		const struct be_frontend *f = &be->frontends[i];

		n += sysfs_emit_at(buf, n, "frontend %u vcpus=%u ioreq=%#llx window=%#llx window-size=%#llx name=%s\n",
				   f->index, f->vcpus, f->ioreq, f->window, f->window_size, f->name);
	}
	/* args last: it may hold spaces, so it is the rest of the line. */
	for (i = 0; i < be->nr_devices; i++) {
		const struct be_device *d = &be->devices[i];

		n += sysfs_emit_at(buf, n, "device %u frontend=%u mmio=%#llx size=%#llx classic=%d args=%s\n",
				   d->index, d->frontend, d->mmio, d->mmio_size, d->classic, d->args);
	}
	return n;
}
static DEVICE_ATTR_RO(layout);

static struct attribute *be_attrs[] = { &dev_attr_layout.attr, NULL };
ATTRIBUTE_GROUPS(be);

static int be_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct device_node *np = dev->of_node, *child;
	struct resource *res;
	struct be *be;
	u64 transport, notify;
	u32 magic;
	int err;

	be = devm_kzalloc(dev, sizeof(*be), GFP_KERNEL);
	if (!be)
		return -ENOMEM;
	be->dev = dev;
	init_waitqueue_head(&be->wait);
	atomic64_set(&be->irq_count, 0);

	be->doorbell = devm_platform_get_and_ioremap_resource(pdev, 0, &res);
	if (IS_ERR(be->doorbell)) {
		dev_err(dev, "cannot map the doorbell (reg): %ld\n", PTR_ERR(be->doorbell));
		return PTR_ERR(be->doorbell);
	}
	magic = readl(be->doorbell + DOORBELL_MAGIC);
	be->version = readl(be->doorbell + DOORBELL_VERSION);
	be->features = readl(be->doorbell + DOORBELL_FEATURES);
	if (magic != DOORBELL_MAGIC_VALUE || be->version < 1) {
		dev_err(dev, "doorbell at %pR: MAGIC %#x VERSION %u, want %#x and >= 1\n", res, magic,
			be->version, DOORBELL_MAGIC_VALUE);
		return -ENODEV;
	}
	err = be_add_region(be, "doorbell", -1, res->start, resource_size(res), 0, REGION_DEVICE);
	if (err)
		return err;

	if (be_read_addr(be, np, "rust-ioreq,transport-page", &transport) ||
	    be_read_addr(be, np, "rust-ioreq,notify-page", &notify))
		return -EINVAL;
	if (transport) {
		err = be_add_region(be, "transport", -1, transport, PAGE_SIZE, 0, REGION_WB);
		if (err)
			return err;
	}
	if (notify) {
		err = be_add_region(be, "notify", -1, notify, PAGE_SIZE, 0, REGION_WB);
		if (err)
			return err;
	}
	for_each_available_child_of_node(np, child) {
		err = be_parse_frontend(be, child);
		if (err) {
			of_node_put(child);
			return err;
		}
	}

	be->irq = platform_get_irq(pdev, 0);
	if (be->irq < 0)
		return be->irq;
	err = devm_request_irq(dev, be->irq, be_notify_irq, 0, DRV_NAME, be);
	if (err) {
		dev_err(dev, "cannot request the notify interrupt %d: %d\n", be->irq, err);
		return err;
	}

	mutex_lock(&be_instance_lock);
	if (be_instance) {
		mutex_unlock(&be_instance_lock);
		dev_err(dev, "a second rust-ioreq backend node: only one is served\n");
		return -EBUSY;
	}
	be->misc.minor = MISC_DYNAMIC_MINOR;
	be->misc.name = DRV_NAME;
	be->misc.fops = &be_fops;
	be->misc.parent = dev;
	be->misc.groups = be_groups;
	err = misc_register(&be->misc);
	if (!err)
		be_instance = be;
	mutex_unlock(&be_instance_lock);
	if (err) {
		dev_err(dev, "misc_register: %d\n", err);
		return err;
	}
	platform_set_drvdata(pdev, be);
	dev_info(dev, "rust-ioreq backend ABI %u (features %#x): %u frontend(s), %u device(s), %u region(s), notify irq %d\n",
		 be->version, be->features, be->nr_frontends, be->nr_devices, be->nr_regions,
		 be->irq);
	return 0;
}

static int be_remove(struct platform_device *pdev)
{
	struct be *be = platform_get_drvdata(pdev);

	mutex_lock(&be_instance_lock);
	misc_deregister(&be->misc);
	be_instance = NULL;
	mutex_unlock(&be_instance_lock);
	return 0;
}

static const struct of_device_id be_of_match[] = {
	{ .compatible = "rust-ioreq,backend-v2" },
	{ .compatible = "rust-ioreq,backend-v1" },
	{}
};
MODULE_DEVICE_TABLE(of, be_of_match);

static struct platform_driver be_driver = {
	.probe = be_probe,
	.remove = be_remove,
	.driver = {
		.name = DRV_NAME,
		.of_match_table = be_of_match,
		/* No unbind while a file may be open: only module unload removes it, and an open
		 * file holds the module. */
		.suppress_bind_attrs = true,
	},
};
module_platform_driver(be_driver);

MODULE_DESCRIPTION("rust-ioreq backend: maps the Xen rust-ioreq backend interface for userspace");
MODULE_LICENSE("GPL");
