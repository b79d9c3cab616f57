/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the guest programs of the vfio-pci live update tests, on
 * top of the kernel's selftest libraries: libvfio (devices by BDF, sysfs and
 * cdev look-ups, VFIO_DEVICE_BIND_IOMMUFD) and libliveupdate (LUO sessions
 * and the stage 1 / stage 2 driver, luo_test()). What is here is what the
 * libraries do not do, or do only by exiting on an error that a test
 * expects: the module's debugfs knobs, kernel command line parameters, the
 * virtio status register, raw opens whose errno is the result.
 *
 * The host runner (vmtest.sh) passes on the kernel command line:
 *   vfio_lu_stage=1|2       which stage of the two-stage test runs
 *   vfio_lu_devs=V:D,V:D,...  one vendor:device entry per emulated device
 * (and vfio_lu_fault_devs=, vfio_lu_reset_devs= for two tests' own devices).
 * init binds those devices to vfio-pci and hands their BDFs to the tests, on
 * the command line ("$VFIO_LU_BDFS" in a list) and in the environment
 * (VFIO_SELFTESTS_BDF, VFIO_LU_BDFS, VFIO_LU_FAULT_BDFS, VFIO_LU_RESET_BDFS).
 */
#ifndef VFIO_LU_UTIL_H
#define VFIO_LU_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/iommufd.h>
#include <linux/liveupdate.h>
#include <linux/vfio.h>

#include <libliveupdate.h>
#include <libvfio.h>

#include "kselftest.h"

#define VFIO_LU_MAX_DEVS	64
#define VFIO_LU_MODULE		"vfio_pci_liveupdate"
#define VFIO_LU_MODULES_DIR	"/lib/modules"
#define VFIO_LU_MODULE_PATH	VFIO_LU_MODULES_DIR "/" VFIO_LU_MODULE ".ko"
#define PCI_DEVICES		"/sys/bus/pci/devices"

struct vfio_lu_dev {
	char bdf[16];		/* "0000:01:00.0" */
	unsigned int vendor;
	unsigned int device;
};

/*
 * The module is not loaded: have the tracing enable its events when it is
 * loaded again (set_event's ":mod:" is kept until then), as init enabled
 * them at the first load; the host's report reads them from the console.
 * Appends, so that other enabled events stay on; quietly does nothing
 * without tracefs.
 */
static inline void vfio_lu_trace_next_load(void)
{
	static const char cmd[] = ":mod:" VFIO_LU_MODULE;
	int fd = open("/sys/kernel/tracing/set_event", O_WRONLY | O_APPEND | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, cmd, sizeof(cmd) - 1) < 0)
			perror("set_event");
		close(fd);
	}
}

/* Read a small sysfs/proc file into @buf, without the trailing newline. */
static inline int vfio_lu_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

static inline int vfio_lu_write_file(const char *path, const char *val)
{
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	if (n < 0)
		return -errno;
	return 0;
}

/* Value of "key=value" on the kernel command line, or -ENOENT. */
static inline int vfio_lu_cmdline(const char *key, char *val, size_t len)
{
	char cmdline[4096], *tok, *save;
	size_t klen = strlen(key);
	int ret;

	ret = vfio_lu_read_file("/proc/cmdline", cmdline, sizeof(cmdline));
	if (ret)
		return ret;
	for (tok = strtok_r(cmdline, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		if (!strncmp(tok, key, klen) && tok[klen] == '=') {
			snprintf(val, len, "%s", tok + klen + 1);
			return 0;
		}
	}
	return -ENOENT;
}

/* The stage given as "-s N" to a two-stage test program, or 0. */
static inline int vfio_lu_stage_arg(int argc, char **argv)
{
	int opt, stage = 0;

	while ((opt = getopt(argc, argv, "s:")) != -1)
		if (opt == 's')
			stage = atoi(optarg);
	return stage;
}

static inline int vfio_lu_stage(void)
{
	char val[8];

	if (vfio_lu_cmdline("vfio_lu_stage", val, sizeof(val)))
		return 1;
	return atoi(val);
}

/*
 * Vendor:device pairs the host asked for in kernel parameter @key
 * (vfio_lu_devs: the tests' devices, one per emulated device;
 * vfio_lu_fault_devs: the fault injection test's). Returns how many, or a
 * negative errno.
 */
static inline int vfio_lu_wanted_ids(const char *key, unsigned int ids[][2], int max)
{
	char val[1024], *tok, *save;
	int n = 0, ret;

	ret = vfio_lu_cmdline(key, val, sizeof(val));
	if (ret)
		return ret;
	for (tok = strtok_r(val, ",", &save); tok && n < max;
	     tok = strtok_r(NULL, ",", &save)) {
		if (sscanf(tok, "%x:%x", &ids[n][0], &ids[n][1]) != 2)
			return -EINVAL;
		n++;
	}
	return n;
}

static inline int vfio_lu_sysfs_hex(const char *bdf, const char *attr,
				    unsigned int *out)
{
	char path[PATH_MAX], buf[32];
	int ret;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/%s", bdf, attr);
	ret = vfio_lu_read_file(path, buf, sizeof(buf));
	if (ret)
		return ret;
	*out = strtoul(buf, NULL, 16);
	return 0;
}

/* @bdf with its vendor and device IDs from sysfs (0 where unreadable). */
static inline void vfio_lu_dev_of(const char *bdf, struct vfio_lu_dev *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
	if (vfio_lu_sysfs_hex(d->bdf, "vendor", &d->vendor) ||
	    vfio_lu_sysfs_hex(d->bdf, "device", &d->device))
		fprintf(stderr, "# %s: no vendor/device in sysfs\n", bdf);
}

/*
 * The test's devices, as the VFIO selftests take them (libvfio): the BDFs at
 * the end of the command line, which are taken off @argc, or else
 * $VFIO_SELFTESTS_BDF; without either the program exits with KSFT_SKIP.
 * Returns how many, in the order given.
 */
static inline int vfio_lu_devs_from_args(int *argc, char **argv,
					 struct vfio_lu_dev *devs, int max)
{
	char **bdfs;
	int n, i;

	bdfs = vfio_selftests_get_bdfs(argc, argv, &n);
	if (n > max)
		n = max;
	for (i = 0; i < n; i++)
		vfio_lu_dev_of(bdfs[i], &devs[i]);
	return n;
}

/*
 * The devices in environment variable @var (BDFs separated by spaces, as
 * init sets VFIO_LU_FAULT_BDFS and VFIO_LU_RESET_BDFS): how many, 0 if unset.
 */
static inline int vfio_lu_devs_from_env(const char *var, struct vfio_lu_dev *devs, int max)
{
	const char *val = getenv(var);
	char list[1024], *tok, *save;
	int n = 0;

	if (!val)
		return 0;
	snprintf(list, sizeof(list), "%s", val);
	for (tok = strtok_r(list, " ", &save); tok && n < max; tok = strtok_r(NULL, " ", &save))
		vfio_lu_dev_of(tok, &devs[n++]);
	return n;
}

/* Name of the driver bound to @bdf into @drv ("" if none), from libvfio. */
static inline void vfio_lu_driver(const char *bdf, char *drv, size_t len)
{
	char *name = sysfs_driver_get(bdf);

	snprintf(drv, len, "%s", name ? name : "");
	free(name);
}

/*
 * Open the VFIO cdev of @bdf: the fd or -errno. libvfio finds the cdev, and
 * exits if there is none: a device not bound to vfio-pci (no vfio-dev in
 * sysfs) is -ENODEV here, a refused open the errno of open().
 */
static inline int vfio_lu_open_cdev(const char *bdf)
{
	char path[PATH_MAX];
	struct dirent *e;
	int fd = -ENODEV;
	DIR *dir;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/vfio-dev", bdf);
	dir = opendir(path);
	if (!dir)
		return -ENODEV;
	/* vfioN, or noiommu-vfioN in VFIO's no-IOMMU mode (which libvfio does not look for) */
	while ((e = readdir(dir))) {
		if (strncmp(e->d_name, "vfio", 4) && strncmp(e->d_name, "noiommu-vfio", 12))
			continue;
		snprintf(path, sizeof(path), "/dev/vfio/devices/%s", e->d_name);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
		break;
	}
	closedir(dir);
	return fd;
}

/* Whether the cdev of each of the @n devices opens (each closed again); -errno of the first not. */
static inline int vfio_lu_cdevs_open(const struct vfio_lu_dev *devs, int n)
{
	for (int i = 0; i < n; i++) {
		int fd = vfio_lu_open_cdev(devs[i].bdf);

		if (fd < 0) {
			fprintf(stderr, "# %s: cdev open: %s\n", devs[i].bdf, strerror(-fd));
			return fd;
		}
		close(fd);
	}
	return 0;
}

/*
 * VFIO_GROUP_GET_DEVICE_FD of @bdf through its IOMMU group's /dev/vfio/N
 * (no container needed to get this far): the fd or -errno.
 */
static inline int vfio_lu_group_device_fd(const char *bdf)
{
	char path[PATH_MAX];
	int groupfd, fd;

	snprintf(path, sizeof(path), "/dev/vfio/%d", sysfs_iommu_group_get(bdf));
	groupfd = open(path, O_RDWR | O_CLOEXEC);
	if (groupfd < 0)
		return -errno;
	fd = ioctl(groupfd, VFIO_GROUP_GET_DEVICE_FD, bdf);
	fd = fd < 0 ? -errno : fd;
	close(groupfd);
	return fd;
}

/* Where init records, right after loading the module, each PCI function's driver and override. */
#define VFIO_LU_AT_LOAD		"/tmp/vfio-lu-at-load"
/*
 * The reset test's devices (vfio_lu_reset_devs, sorted by address): three
 * with faults, the one whose session is abandoned (and, with
 * bind_preserved=1, whose identity in the list is corrupted), then the two
 * functions of one multifunction device, which share a VFIO device set.
 */
#define VFIO_LU_RESET_LOST	3
#define VFIO_LU_RESET_FN0	4
#define VFIO_LU_RESET_NDEVS	6

/* The module's bind_preserved log lines up to then, kept by init. */
#define VFIO_LU_AT_LOAD_LOG	"/tmp/vfio-lu-at-load.log"

/* An open cdev file of @bdf, bound to @iommufd, or -errno. */
static inline int vfio_lu_bound_cdev(const char *bdf, int iommufd)
{
	int fd = vfio_lu_open_cdev(bdf), ret;

	if (fd < 0)
		return fd;
	ret = __vfio_device_bind_iommufd(fd, iommufd, NULL);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/* How many references hold our module (LUO takes one per preserved file). */
static inline int vfio_lu_module_refcnt(void)
{
	char buf[16];

	if (vfio_lu_read_file("/sys/module/" VFIO_LU_MODULE "/refcnt", buf, sizeof(buf)))
		return -1;
	return atoi(buf);
}

/* Read @len bytes at @off of the config space through a bound device fd. */
static inline int vfio_lu_config_read(int devfd, void *buf, size_t len, off_t off)
{
	struct vfio_region_info reg = {
		.argsz = sizeof(reg), .index = VFIO_PCI_CONFIG_REGION_INDEX,
	};

	if (ioctl(devfd, VFIO_DEVICE_GET_REGION_INFO, &reg))
		return -errno;
	if (pread(devfd, buf, len, reg.offset + off) != (ssize_t)len)
		return -EIO;
	return 0;
}

/* The PCI address of the device behind a VFIO device fd, from its fdinfo. */
static inline int vfio_lu_fd_bdf(int fd, char *bdf, size_t len)
{
	char path[64], buf[4096], *p, *nl, *slash;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (vfio_lu_read_file(path, buf, sizeof(buf)))
		return -errno;
	p = strstr(buf, "vfio-device-syspath: ");
	if (!p)
		return -ENOENT;
	nl = strchr(p, '\n');
	if (nl)
		*nl = '\0';
	slash = strrchr(p, '/');
	if (!slash)
		return -ENOENT;
	snprintf(bdf, len, "%s", slash + 1);
	return 0;
}

/*
 * A two-stage program's session @name, created (@create, stage 1) or
 * retrieved (stage 2), and /dev/iommu opened into @iommufd: the session's
 * fd. Exits the program with the reason if either fails.
 */
static inline int vfio_lu_session_and_iommufd(int luo, const char *name, bool create,
					      int *iommufd)
{
	int session = create ? luo_create_session(luo, name) : luo_retrieve_session(luo, name);

	if (session < 0)
		ksft_exit_fail_msg("%s session %s: %s\n", create ? "create" : "retrieve", name,
				   strerror(-session));
	*iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (*iommufd < 0)
		ksft_exit_fail_msg("open /dev/iommu: %s\n", strerror(errno));
	return session;
}

/* Leave a child process holding every open fd until the kexec. */
static inline int vfio_lu_hold_fds_for_kexec(void)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (!pid) {
		setsid();
		close(STDIN_FILENO);
		close(STDOUT_FILENO);
		close(STDERR_FILENO);
		for (;;)
			pause();
	}
	return pid;
}

/*
 * The two-stage programs run under libliveupdate's stage driver, luo_test():
 * it takes "-s 1|2", opens /dev/liveupdate and checks the stage asked for
 * against the program's own state session, which stage 1 creates
 * (vfio_lu_state_create(), held by vfio_lu_hold_fds_for_kexec()'s child
 * through the kexec) and stage 2 ends (vfio_lu_state_done()).
 */
#define VFIO_LU_STATE_TOKEN	0x5741

static inline void vfio_lu_state_create(int luo, const char *name)
{
	create_state_file(luo, name, VFIO_LU_STATE_TOKEN, 2);
}

/* Stage 2: the state session says stage 2; it is finished and closed. */
static inline void vfio_lu_state_done(int state)
{
	int stage;

	restore_and_read_stage(state, VFIO_LU_STATE_TOKEN, &stage);
	if (stage != 2)
		fail_exit("the state session says stage %d, not 2", stage);
	if (luo_session_finish(state))
		fail_exit("finishing the state session");
	close(state);
}

/* The kernel log from now on: a /dev/kmsg reader past the current end. */
static inline int vfio_lu_kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* Whether a kernel log record read from @fd since it was opened has @needle. */
static inline bool vfio_lu_kmsg_has(int fd, const char *needle)
{
	char rec[2048];
	bool found = false;
	ssize_t n;

	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* overwritten records: skip ahead */
		if (n <= 0)
			break;
		rec[n] = '\0';
		if (strstr(rec, needle))
			found = true;
	}
	return found;
}

/* The fault injection knobs of the module (CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT). */
#define VFIO_LU_DEBUGFS		"/sys/kernel/debug/vfio_pci_liveupdate"
#define VFIO_LU_FAIL_RESET	VFIO_LU_DEBUGFS "/fail_next_reset"
#define VFIO_LU_CORRUPT		VFIO_LU_DEBUGFS "/corrupt_next_preserve"
#define VFIO_LU_RESETS		VFIO_LU_DEBUGFS "/resets"
#define VFIO_LU_LIST_IDENTITY	VFIO_LU_DEBUGFS "/corrupt_list_identity"

/* Arm a fault ("error" or "locked") of the next reset of @bdf: 0 or -errno. */
static inline int vfio_lu_arm_reset_fault(const char *bdf, const char *what)
{
	char val[64];

	snprintf(val, sizeof(val), "%s %s", bdf, what);
	return vfio_lu_write_file(VFIO_LU_FAIL_RESET, val);
}

/* The module's record of its last reset of a device (debugfs resets). */
struct vfio_lu_reset_record {
	unsigned int seq;	/* counts the module's resets */
	unsigned int before;	/* command register when the reset began */
	unsigned int after;	/* command register right after reset and restore */
	unsigned int irqs;	/* userspace had interrupts enabled then */
};

/* The last reset of @bdf by the module: 0, -ENOENT if none, or -errno. */
static inline int vfio_lu_last_reset(const char *bdf, struct vfio_lu_reset_record *r)
{
	char buf[4096], *line, *save, want[32];
	int ret;

	ret = vfio_lu_read_file(VFIO_LU_RESETS, buf, sizeof(buf));
	if (ret)
		return ret;
	snprintf(want, sizeof(want), "%s seq=", bdf);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, want, strlen(want)) &&
		    sscanf(line + strlen(want), "%u before=%x after=%x irqs=%u", &r->seq,
			   &r->before, &r->after, &r->irqs) == 4)
			return 0;
	return -ENOENT;
}

/* The command register of @bdf right after the module's last reset of it, or -errno. */
static inline int vfio_lu_command_after_reset(const char *bdf)
{
	struct vfio_lu_reset_record r;
	int ret = vfio_lu_last_reset(bdf, &r);

	return ret ? ret : (int)r.after;
}

/* A module parameter as passed on the kernel command line (init hands them on). */
static inline bool vfio_lu_param_on(const char *param)
{
	char key[64], val[8];

	snprintf(key, sizeof(key), VFIO_LU_MODULE ".%s", param);
	if (vfio_lu_cmdline(key, val, sizeof(val)))
		return false;
	return !strcmp(val, "1") || !strcmp(val, "Y") || !strcmp(val, "y");
}

/*
 * Where a modern virtio-pci device's common configuration is: the BAR and
 * the offset in it, from the vendor capability (cfg_type 1) in @cfg, the
 * first 256 bytes of its config space. 0 or -ENOENT.
 */
static inline int vfio_lu_virtio_common_cfg(const uint8_t *cfg, int *bar, uint32_t *off)
{
	int pos = cfg[0x34] & ~3, hops = 0;

	while (pos >= 0x40 && pos < 256 - 16 && hops++ < 48) {
		if (cfg[pos] == 0x09 && cfg[pos + 3] == 1) {
			*bar = cfg[pos + 4];
			memcpy(off, cfg + pos + 8, sizeof(*off));
			return *bar < 6 ? 0 : -ENOENT;
		}
		pos = cfg[pos + 1] & ~3;
	}
	return -ENOENT;
}

/* device_status in virtio's common configuration */
#define VFIO_LU_VIRTIO_STATUS	20

/* The region offset of a virtio device's common configuration, through a bound device fd. */
static inline int vfio_lu_virtio_common_off(int devfd, off_t *out)
{
	struct vfio_region_info reg = { .argsz = sizeof(reg) };
	uint8_t cfg[256];
	uint32_t off;
	int bar, ret;

	ret = vfio_lu_config_read(devfd, cfg, sizeof(cfg), 0);
	if (!ret)
		ret = vfio_lu_virtio_common_cfg(cfg, &bar, &off);
	if (ret)
		return ret;
	reg.index = VFIO_PCI_BAR0_REGION_INDEX + bar;
	if (ioctl(devfd, VFIO_DEVICE_GET_REGION_INFO, &reg))
		return -errno;
	*out = reg.offset + off;
	return 0;
}

/* The region offset of the virtio device status register, through a bound device fd. */
static inline int vfio_lu_virtio_status_off(int devfd, off_t *out)
{
	int ret = vfio_lu_virtio_common_off(devfd, out);

	*out += VFIO_LU_VIRTIO_STATUS;
	return ret;
}

/*
 * VFIO_DEVICE_FEATURE_LIVEUPDATE on a bound device fd: GET into @lu, or SET
 * from it. 0 or -errno.
 */
static inline int vfio_lu_feature(int devfd, bool set, struct vfio_device_feature_liveupdate *lu)
{
	uint64_t buf[(sizeof(struct vfio_device_feature) + sizeof(*lu) + 7) / 8];
	struct vfio_device_feature *f = (struct vfio_device_feature *)buf;

	memset(buf, 0, sizeof(buf));
	f->argsz = sizeof(*f) + sizeof(*lu);
	f->flags = VFIO_DEVICE_FEATURE_LIVEUPDATE |
		   (set ? VFIO_DEVICE_FEATURE_SET : VFIO_DEVICE_FEATURE_GET);
	memcpy(f->data, lu, sizeof(*lu));
	if (ioctl(devfd, VFIO_DEVICE_FEATURE, f))
		return -errno;
	if (!set)
		memcpy(lu, f->data, sizeof(*lu));
	return 0;
}

/* Choose the live update mode of a bound device fd: 0 or -errno. */
static inline int vfio_lu_set_mode(int devfd, uint32_t mode)
{
	struct vfio_device_feature_liveupdate lu = { .mode = mode };

	return vfio_lu_feature(devfd, true, &lu);
}

/* Write the virtio device status of a device through its bound fd: 0 or -errno. */
static inline int vfio_lu_virtio_set_status(int devfd, uint8_t status)
{
	off_t off;
	int ret = vfio_lu_virtio_status_off(devfd, &off);

	if (ret)
		return ret;
	return pwrite(devfd, &status, 1, off) == 1 ? 0 : -EIO;
}

/* The virtio device status through a bound fd, or -errno. */
static inline int vfio_lu_virtio_status(int devfd)
{
	uint8_t status;
	off_t off;
	int ret = vfio_lu_virtio_status_off(devfd, &off);

	if (ret)
		return ret;
	return pread(devfd, &status, 1, off) == 1 ? status : -EIO;
}

/*
 * The virtio device status of @bdf, read from the device through sysfs (its
 * config file and a mapping of the BAR's resource file) whoever has it open,
 * after writing @set to it if @set >= 0: a register that a reset clears.
 * The status, or -errno.
 */
static inline int vfio_lu_virtio_status_sysfs_rw(const char *bdf, int set)
{
	char path[PATH_MAX];
	uint8_t cfg[256];
	uint32_t off;
	uint8_t *map;
	long page = sysconf(_SC_PAGESIZE);
	int fd, bar, ret;
	off_t base;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/config", bdf);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = pread(fd, cfg, sizeof(cfg), 0) == sizeof(cfg) ? 0 : -EIO;
	close(fd);
	if (!ret)
		ret = vfio_lu_virtio_common_cfg(cfg, &bar, &off);
	if (ret)
		return ret;
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/resource%d", bdf, bar);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	base = off & ~(page - 1);
	map = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, base);
	close(fd);
	if (map == MAP_FAILED)
		return -errno;
	/* Real accesses to the register, which the compiler may not drop. */
	if (set >= 0)
		__atomic_store_n(&map[off - base + VFIO_LU_VIRTIO_STATUS], set, __ATOMIC_RELAXED);
	ret = __atomic_load_n(&map[off - base + VFIO_LU_VIRTIO_STATUS], __ATOMIC_RELAXED);
	munmap(map, page);
	return ret;
}

/* The virtio device status of @bdf read through sysfs, or -errno. */
static inline int vfio_lu_virtio_status_sysfs(const char *bdf)
{
	return vfio_lu_virtio_status_sysfs_rw(bdf, -1);
}

/*
 * Vector 0 of interrupt index @index (VFIO_PCI_INTX_IRQ_INDEX, ..._MSIX_...)
 * on, with an eventfd trigger, or off, through a bound device fd: 0 or -errno.
 */
static inline int vfio_lu_set_irq(int fd, unsigned int index, bool on)
{
	char buf[sizeof(struct vfio_irq_set) + sizeof(int)];
	struct vfio_irq_set *set = (struct vfio_irq_set *)buf;
	int efd = -1, ret;

	memset(buf, 0, sizeof(buf));
	set->argsz = sizeof(*set);
	set->index = index;
	set->flags = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_NONE;
	if (on) {
		efd = eventfd(0, EFD_CLOEXEC);
		if (efd < 0)
			return -errno;
		set->argsz = sizeof(buf);
		set->flags = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD;
		set->count = 1;
		memcpy(set->data, &efd, sizeof(efd));
	}
	ret = ioctl(fd, VFIO_DEVICE_SET_IRQS, set) ? -errno : 0;
	if (efd >= 0)
		close(efd);
	return ret;
}

/* INTx on or off, through a bound device fd: 0 or -errno. */
static inline int vfio_lu_set_intx(int fd, bool on)
{
	return vfio_lu_set_irq(fd, VFIO_PCI_INTX_IRQ_INDEX, on);
}

/* The module's parameters from the kernel command line, as "a=1 b=0" in @out. */
static inline void vfio_lu_module_params(char *out, size_t len)
{
	char cmdline[4096], *tok, *save;
	const char *prefix = VFIO_LU_MODULE ".";
	size_t n = 0;

	out[0] = '\0';
	if (vfio_lu_read_file("/proc/cmdline", cmdline, sizeof(cmdline)))
		return;
	for (tok = strtok_r(cmdline, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		if (!strncmp(tok, prefix, strlen(prefix)) && n < len)
			n += snprintf(out + n, len - n, "%s%s", n ? " " : "",
				      tok + strlen(prefix));
}

#endif /* VFIO_LU_UTIL_H */
