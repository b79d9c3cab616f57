// SPDX-License-Identifier: GPL-2.0
/*
 * Every emulated device's VFIO device file survives the kexec.
 *
 *   vfio_lu_kexec_test -s 1   open each device's cdev, bind it to iommufd,
 *                             read its IDs through VFIO and preserve it in one
 *                             session, with a memfd recording what was seen;
 *                             a kexec with interrupts enabled on the last device is
 *                             refused, the system keeps running, and the first
 *                             device, frozen and reset before the refusal, is
 *                             unfrozen and works as before; while it was frozen,
 *                             its fd gave EIO and its BAR mmap SIGBUS (the kexec
 *                             is refused again, up to 10 times, until a look
 *                             by another thread fell wholly inside the
 *                             freeze); a child holds the session for the real
 *                             kexec (interrupts off)
 *   vfio_lu_kexec_test -s 2   the module bound the devices at load only with
 *                             bind_preserved=1; finish fails before retrieve;
 *                             opening a device through its cdev or its group
 *                             fails with EBUSY before retrieve; retrieve gives
 *                             a file per token, for the device stage 1 saw,
 *                             reset; finish fails before bind; bind does not
 *                             reset the device again (a virtio status set
 *                             through sysfs before it survives), GET_INFO and
 *                             config reads give the IDs stage 1 read, and the
 *                             cdevs open again; finish works; the module
 *                             unloads afterwards, reloads, and holds nothing
 *                             off
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/pci_regs.h>
#include <linux/reboot.h>

#include "vfio_lu_util.h"
#include "kselftest.h"

#define SESSION_NAME	"vfio-lu-devices"
#define STATE_SESSION	"vfio-lu-devices-state"
#define DEV_TOKEN(i)	(0x766670000ULL + (i))
#define RECORD_TOKEN	0x7265636fULL
/* virtio device status ACKNOWLEDGE | DRIVER, which a reset clears */
#define VIRTIO_STATUS	0x03
#define VIRTIO_VENDOR	0x1af4
/* virtio device status ACKNOWLEDGE, set after retrieve: the bind must keep it */
#define VIRTIO_STATUS_MARK	0x01
/* kexecs refused at most, until the watcher has seen the device frozen throughout */
#define REFUSALS	10

static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

/* What stage 1 saw of each preserved device, kept in a preserved memfd. */
struct record {
	int ndevs;
	struct {
		char bdf[16];
		uint16_t vendor, device;	/* read through the VFIO fd */
	} dev[VFIO_LU_MAX_DEVS];
};

/* Read vendor and device IDs through a bound VFIO device fd. */
static int read_ids(int fd, uint16_t *vendor, uint16_t *device)
{
	uint16_t id[2];
	int ret = vfio_lu_config_read(fd, id, sizeof(id), PCI_VENDOR_ID);

	*vendor = id[0];
	*device = id[1];
	return ret;
}

/* What one kexec refused by a device with interrupts on gave: 0 or -errno. */
struct refusal {
	int intx_on, reboot, intx_off;
	bool logged;		/* the kernel said which device refused, and why */
};

/*
 * With interrupts on, the kexec must be refused by our freeze: the reboot
 * call fails with EBUSY, the kernel says why, and we are still running.
 */
static void refuse_kexec(int fd, const char *bdf, struct refusal *r)
{
	char needle[128];
	int kmsg;

	r->intx_on = vfio_lu_set_intx(fd, true);
	kmsg = vfio_lu_kmsg_open();
	r->reboot = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			    LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
	snprintf(needle, sizeof(needle), "%s: live update: cannot freeze: interrupts are enabled",
		 bdf);
	r->logged = kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle);
	if (kmsg >= 0)
		close(kmsg);
	r->intx_off = vfio_lu_set_intx(fd, false);
}

/* Read-modify-write of the bus master bit through the device fd. */
static int set_bus_master(int fd, bool on)
{
	struct vfio_region_info reg = {
		.argsz = sizeof(reg), .index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	uint16_t cmd;
	int ret;

	ret = vfio_lu_config_read(fd, &cmd, sizeof(cmd), PCI_COMMAND);
	if (ret)
		return ret;
	cmd = on ? cmd | PCI_COMMAND_MASTER : cmd & ~PCI_COMMAND_MASTER;
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &reg))
		return -errno;
	if (pwrite(fd, &cmd, sizeof(cmd), reg.offset + PCI_COMMAND) != sizeof(cmd))
		return -EIO;
	return 0;
}

static int bus_master(int fd)
{
	uint16_t cmd;
	int ret = vfio_lu_config_read(fd, &cmd, sizeof(cmd), PCI_COMMAND);

	return ret ? ret : !!(cmd & PCI_COMMAND_MASTER);
}

/* A thread's way back from a SIGBUS on a BAR mmap. */
static __thread sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(bus_jmp, 1);
}

/* Read a BAR mmap; false if the access faults with SIGBUS. */
static bool bar_readable(uint32_t *bar)
{
	if (sigsetjmp(bus_jmp, 1))
		return false;
	/* One real load, which the compiler may not drop. */
	(void)__atomic_load_n(bar, __ATOMIC_RELAXED);
	return true;
}

/*
 * What a VMM thread sees of a device while a live update has it frozen: a
 * thread polls the device fd during the reboot call until an ioctl fails with
 * EIO, then tries every other way in at once, and the ioctl once more. The
 * freeze ends only at the unfreeze, once per reboot call: if that last ioctl
 * fails with EIO too, every try was made while the device was frozen. A
 * thread that was not scheduled for as long as the freeze lasted (at least
 * the reset, 100 ms; but a TCG guest's vCPU may wait longer for the host)
 * does not know, and says so.
 */
struct frozen_watch {
	int fd;
	off_t cfg_off, bar_off;		/* region offsets, read before the freeze */
	uint32_t *bar;			/* a mmap of that BAR, made before the freeze */
	atomic_bool stop;
	bool seen;			/* an ioctl failed with EIO */
	bool inside;			/* and again after the tries: they were made frozen */
	int ioctl_err, read_err, write_err, mmap_err;
	bool bar_sigbus;
};

static void *watch_frozen(void *arg)
{
	struct frozen_watch *w = arg;
	struct vfio_device_info info = { .argsz = sizeof(info) };
	uint16_t cmd = 0;
	void *map;

	while (!atomic_load(&w->stop)) {
		if (!ioctl(w->fd, VFIO_DEVICE_GET_INFO, &info) || errno != EIO)
			continue;
		w->seen = true;
		w->ioctl_err = errno;
		w->bar_sigbus = w->bar && !bar_readable(w->bar);
		w->read_err = pread(w->fd, &cmd, sizeof(cmd), w->cfg_off + PCI_COMMAND) < 0 ?
			      errno : 0;
		w->write_err = pwrite(w->fd, &cmd, sizeof(cmd), w->cfg_off + PCI_COMMAND) < 0 ?
			       errno : 0;
		map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, w->fd, w->bar_off);
		w->mmap_err = map == MAP_FAILED ? errno : 0;
		if (map != MAP_FAILED)
			munmap(map, 4096);
		w->inside = ioctl(w->fd, VFIO_DEVICE_GET_INFO, &info) && errno == EIO;
		break;
	}
	return NULL;
}

/* Map the first BAR of the device that can be mapped; its offset in *@off. */
static uint32_t *map_bar(int fd, off_t *off)
{
	struct vfio_region_info reg = { .argsz = sizeof(reg) };
	void *map;

	for (reg.index = VFIO_PCI_BAR0_REGION_INDEX; reg.index <= VFIO_PCI_BAR5_REGION_INDEX;
	     reg.index++) {
		if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &reg) ||
		    !(reg.flags & VFIO_REGION_INFO_FLAG_MMAP) || reg.size < 4096)
			continue;
		map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, reg.offset);
		if (map == MAP_FAILED)
			continue;
		*off = reg.offset;
		return map;
	}
	return NULL;
}

/*
 * A kexec refused by a later file's freeze cancels the freezes already done
 * (LUO freezes a session's files in the order they were preserved): the
 * earlier device was reset, is unfrozen, and its fd works again as before,
 * bus mastering included.
 */
static void refusal_unfreezes_earlier_device(int fd, int last_fd, const char *bdf,
					     const char *last_bdf, const struct vfio_lu_dev *dev)
{
	struct vfio_region_info reg = {
		.argsz = sizeof(reg), .index = VFIO_PCI_BAR0_REGION_INDEX,
	};
	struct vfio_region_info cfg = {
		.argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	struct sigaction sa = { .sa_handler = on_sigbus };
	struct frozen_watch w;
	struct refusal r;
	uint16_t vendor = 0, device = 0;
	int ret, status, cmd, attempt;
	pthread_t thread;
	uint32_t *bar;
	off_t bar_off;
	bool frozen;

	ret = set_bus_master(fd, true);
	ksft_test_result(!ret && bus_master(fd) == 1, "stage1_vmm_enables_bus_master %s (%s)\n",
			 bdf, strerror(-ret));
	/* A reset by the VMM saves the device's state, bus mastering on. */
	ret = ioctl(fd, VFIO_DEVICE_RESET) ? -errno : 0;
	if (!ret)
		ret = vfio_lu_virtio_set_status(fd, VIRTIO_STATUS);
	ksft_test_result(!ret && bus_master(fd) == 1 && vfio_lu_virtio_status(fd) == VIRTIO_STATUS,
			 "stage1_vmm_resets_device_with_bus_master_on %s (%s)\n", bdf,
			 strerror(-ret));
	sigaction(SIGBUS, &sa, NULL);
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &cfg))
		ksft_exit_fail_msg("%s: config region info: %s\n", bdf, strerror(errno));
	bar = map_bar(fd, &bar_off);
	if (!bar || !bar_readable(bar))
		ksft_exit_fail_msg("%s: no BAR that can be mapped and read\n", bdf);
	for (attempt = 1; attempt <= REFUSALS; attempt++) {
		/* Each freeze resets the device: the VMM sets the status again. */
		ret = attempt == 1 ? 0 : vfio_lu_virtio_set_status(fd, VIRTIO_STATUS);
		if (ret)
			ksft_exit_fail_msg("%s: virtio status: %s\n", bdf, strerror(-ret));
		memset(&w, 0, sizeof(w));
		w.fd = fd;
		w.cfg_off = cfg.offset;
		w.bar = bar;
		w.bar_off = bar_off;
		atomic_store(&w.stop, false);
		ret = pthread_create(&thread, NULL, watch_frozen, &w);
		if (ret)
			ksft_exit_fail_msg("pthread_create: %s\n", strerror(ret));
		refuse_kexec(last_fd, last_bdf, &r);
		atomic_store(&w.stop, true);
		pthread_join(thread, NULL);
		if (r.intx_on || r.reboot != -EBUSY || r.intx_off || w.inside)
			break;
		ksft_print_msg("refused kexec %d: the watcher %s; once more\n", attempt,
			       w.seen ? "was not done before the unfreeze" :
			       "never saw the device frozen");
	}
	attempt = attempt > REFUSALS ? REFUSALS : attempt;

	ksft_test_result(!r.intx_on, "stage1_enable_intx %s (%s)\n", last_bdf,
			 strerror(-r.intx_on));
	ksft_test_result(r.reboot == -EBUSY, "stage1_kexec_refused_with_interrupts_on (%s)\n",
			 strerror(-r.reboot));
	ksft_test_result(r.logged, "stage1_refusal_logged_with_bdf_and_reason\n");
	ksft_test_result(!r.intx_off, "stage1_disable_intx %s (%s)\n", last_bdf,
			 strerror(-r.intx_off));
	/* Only what was seen while the device was known to be frozen counts. */
	frozen = w.seen && w.inside;
	ksft_test_result(frozen && w.ioctl_err == EIO,
			 "stage1_frozen_ioctl_eio %s (refused kexec %d, %s)\n", bdf, attempt,
			 frozen ? "seen frozen" : "never seen frozen throughout");
	ksft_test_result(frozen && w.read_err == EIO, "stage1_frozen_read_eio %s (%s)\n", bdf,
			 strerror(w.read_err));
	ksft_test_result(frozen && w.write_err == EIO, "stage1_frozen_write_eio %s (%s)\n", bdf,
			 strerror(w.write_err));
	ksft_test_result(frozen && w.mmap_err == EIO, "stage1_frozen_mmap_eio %s (%s)\n", bdf,
			 strerror(w.mmap_err));
	ksft_test_result(frozen && w.bar_sigbus, "stage1_frozen_bar_mmap_sigbus %s\n", bdf);

	/*
	 * The evidence of the reset is the device's: its virtio status, set by
	 * the VMM before, reads as reset; and the command register right after
	 * the reset (the module read it from the device) has bus mastering off,
	 * although the state saved by VFIO_DEVICE_RESET had it on.
	 */
	status = vfio_lu_virtio_status(fd);
	ksft_test_result(status == 0,
			 "stage1_earlier_device_reset_before_the_refusal %s (status %d)\n",
			 bdf, status);
	cmd = vfio_lu_command_after_reset(bdf);
	ksft_test_result(cmd >= 0 && !(cmd & PCI_COMMAND_MASTER),
			 "stage1_bus_master_off_right_after_the_freeze_reset %s (command %#x)\n",
			 bdf, cmd);
	ret = read_ids(fd, &vendor, &device);
	ksft_test_result(!ret && vendor == dev->vendor && device == dev->device,
			 "stage1_unfrozen_config_read %s (%04x:%04x)\n", bdf, vendor, device);
	ksft_test_result(bus_master(fd) == 1, "stage1_unfrozen_bus_master_as_before %s\n", bdf);
	ret = set_bus_master(fd, false);
	ksft_test_result(!ret && bus_master(fd) == 0, "stage1_unfrozen_config_write %s (%s)\n",
			 bdf, strerror(-ret));
	ret = ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &reg) ? -errno : 0;
	ksft_test_result(!ret, "stage1_unfrozen_region_info %s (%s)\n", bdf, strerror(-ret));
	ksft_test_result(bar_readable(bar), "stage1_unfrozen_bar_mmap_works %s\n", bdf);
	munmap(bar, 4096);
	/* The VMM goes on with the device, which the real kexec resets. */
	ret = vfio_lu_virtio_set_status(fd, VIRTIO_STATUS);
	ksft_test_result(!ret, "stage1_vmm_sets_virtio_status_again %s (%s)\n", bdf,
			 strerror(-ret));
}

static void find_devices(void)
{
	if (ndevs <= 0)
		ksft_exit_fail_msg("no devices given\n");
}

static void stage1(int luo)
{
	int session, iommufd, mfd, fd, ret, i;
	int fds[VFIO_LU_MAX_DEVS];
	struct record *rec;
	pid_t pid;

	find_devices();
	if (ndevs < 2)
		ksft_exit_fail_msg("the refusal test needs two devices, found %d\n", ndevs);
	if (devs[0].vendor != VIRTIO_VENDOR)
		ksft_exit_fail_msg("the first device must be a virtio device, found %04x:%04x\n",
				   devs[0].vendor, devs[0].device);
	ksft_set_plan(22 + ndevs);

	vfio_lu_state_create(luo, STATE_SESSION);
	session = luo_create_session(luo, SESSION_NAME);
	ksft_test_result(session >= 0, "stage1_create_session\n");
	if (session < 0)
		ksft_exit_fail_msg("create session: %s\n", strerror(-session));
	close(luo);	/* /dev/liveupdate is exclusive; the session lives on */
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ksft_test_result(iommufd >= 0, "stage1_open_iommufd\n");

	mfd = memfd_create("vfio-lu-record", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, sizeof(*rec)))
		ksft_exit_fail_msg("memfd: %s\n", strerror(errno));
	rec = mmap(NULL, sizeof(*rec), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (rec == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	rec->ndevs = ndevs;

	for (i = 0; i < ndevs; i++) {
		fd = vfio_lu_open_cdev(devs[i].bdf);
		ret = fd < 0 ? fd : __vfio_device_bind_iommufd(fd, iommufd, NULL);
		if (!ret)
			ret = read_ids(fd, &rec->dev[i].vendor, &rec->dev[i].device);
		if (!ret)
			ret = luo_session_preserve_fd(session, fd, DEV_TOKEN(i));
		if (ret)
			ksft_print_msg("%s: %s\n", devs[i].bdf, strerror(-ret));
		snprintf(rec->dev[i].bdf, sizeof(rec->dev[i].bdf), "%s", devs[i].bdf);
		/* The device fd stays open, as a VMM's would. */
		fds[i] = fd;
		ksft_test_result(!ret, "stage1_bind_and_preserve %s\n", devs[i].bdf);
	}
	munmap(rec, sizeof(*rec));
	ret = luo_session_preserve_fd(session, mfd, RECORD_TOKEN);
	ksft_test_result(!ret, "stage1_preserve_record (%s)\n", strerror(-ret));

	/* The last device refuses, after the first one froze. */
	if (fds[0] < 0 || fds[ndevs - 1] < 0)
		ksft_exit_fail_msg("no devices to test the refusal with\n");
	refusal_unfreezes_earlier_device(fds[0], fds[ndevs - 1], devs[0].bdf,
					 devs[ndevs - 1].bdf, &devs[0]);

	pid = vfio_lu_hold_fds_for_kexec();
	if (pid < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-pid));
	ksft_print_msg("session '%s' with %d device(s) held by pid %d for the kexec\n",
		       SESSION_NAME, ndevs, pid);
	ksft_finished();
}

/* The retrieved file is a VFIO device file for @bdf, made by our handler. */
static bool is_retrieved_file_of(int fd, const char *bdf)
{
	char path[64], target[128], fd_bdf[32];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	if (strcmp(target, "anon_inode:[vfio-device-liveupdate]")) {
		ksft_print_msg("fd %d is '%s'\n", fd, target);
		return false;
	}
	if (vfio_lu_fd_bdf(fd, fd_bdf, sizeof(fd_bdf)) || strcmp(fd_bdf, bdf)) {
		ksft_print_msg("fd %d is for device '%s', expected %s\n", fd, fd_bdf, bdf);
		return false;
	}
	return true;
}

/* Bind (unless @iommufd < 0), GET_INFO, and the IDs stage 1 read, through @fd. */
static bool device_works(int fd, int iommufd, const char *bdf, uint16_t vendor, uint16_t device)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	uint16_t v = 0, d = 0;
	int ret;

	ret = iommufd < 0 ? 0 : __vfio_device_bind_iommufd(fd, iommufd, NULL);
	if (ret) {
		ksft_print_msg("%s: VFIO_DEVICE_BIND_IOMMUFD: %s\n", bdf, strerror(-ret));
		return false;
	}
	if (ioctl(fd, VFIO_DEVICE_GET_INFO, &info) || !(info.flags & VFIO_DEVICE_FLAGS_PCI)) {
		ksft_print_msg("%s: VFIO_DEVICE_GET_INFO: %s\n", bdf, strerror(errno));
		return false;
	}
	ret = read_ids(fd, &v, &d);
	if (ret || v != vendor || d != device) {
		ksft_print_msg("%s: config space says %04x:%04x, stage 1 read %04x:%04x\n",
			       bdf, v, d, vendor, device);
		return false;
	}
	return true;
}

/*
 * Until its retrieved file is bound, a preserved device cannot be opened
 * through its cdev nor VFIO_GROUP_GET_DEVICE_FD: EBUSY.
 */
static bool open_refused(const char *bdf, bool group)
{
	int fd = group ? vfio_lu_group_device_fd(bdf) : vfio_lu_open_cdev(bdf);

	if (fd >= 0)
		close(fd);
	if (fd != -EBUSY)
		ksft_print_msg("%s: %s open: %s\n", bdf, group ? "group" : "cdev",
			       fd >= 0 ? "succeeded" : strerror(-fd));
	return fd == -EBUSY;
}

static bool in_devs(const char *bdf, const struct vfio_lu_dev *list, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(list[i].bdf, bdf))
			return true;
	return false;
}

/*
 * What the module did to the devices when it loaded (init recorded it before
 * binding anything): with bind_preserved=1, every device the previous kernel
 * preserved (ours, and the fault test's when it ran) was bound to vfio-pci
 * with driver_override vfio-pci; without it, only the kept ones (the keep
 * test's). No other function gets an override either way.
 */
static void bind_policy_at_load(void)
{
	struct vfio_lu_dev fault[VFIO_LU_MAX_DEVS], reset[VFIO_LU_MAX_DEVS];
	struct vfio_lu_dev keep[VFIO_LU_MAX_DEVS];
	char param[8], line[256], bdf[32], drv[64], ovr[64];
	int nfault = 0, nreset = 0, nkeep, seen = 0, want, bad = 0;
	bool on;
	FILE *f;

	/* As init passed it to the module (Rust module parameters are not in sysfs). */
	if (vfio_lu_cmdline(VFIO_LU_MODULE ".bind_preserved", param, sizeof(param)))
		snprintf(param, sizeof(param), "0");
	on = !strcmp(param, "1") || !strcmp(param, "Y") || !strcmp(param, "y");
	/* The fault and reset tests preserve their devices only with fault injection built in. */
	if (!access("/sys/kernel/debug/vfio_pci_liveupdate", F_OK)) {
		nfault = vfio_lu_devs_from_env("VFIO_LU_FAULT_BDFS", fault, VFIO_LU_MAX_DEVS);
		nreset = vfio_lu_devs_from_env("VFIO_LU_RESET_BDFS", reset, VFIO_LU_MAX_DEVS);
	}
	if (nfault < 0)
		nfault = 0;
	if (nreset < 0)
		nreset = 0;
	/* The keep test's devices, kept: the module binds them whatever bind_preserved says. */
	nkeep = vfio_lu_devs_from_env("VFIO_LU_KEEP_BDFS", keep, VFIO_LU_MAX_DEVS);
	if (nkeep < 0)
		nkeep = 0;
	want = ndevs + nfault + nreset + nkeep;
	f = fopen(VFIO_LU_AT_LOAD, "re");
	while (f && fgets(line, sizeof(line), f)) {
		bool preserved, has_ovr, mismatch, ok;

		if (sscanf(line, "%31s %63s %63s", bdf, drv, ovr) != 3)
			continue;
		preserved = in_devs(bdf, devs, ndevs) || in_devs(bdf, fault, nfault) ||
			    in_devs(bdf, reset, nreset) || in_devs(bdf, keep, nkeep);
		has_ovr = strcmp(ovr, "(null)");
		/*
		 * The reset test gave one of its devices another identity in
		 * the list of preserved devices: bind_preserved leaves it alone.
		 */
		mismatch = on && nreset > VFIO_LU_RESET_LOST &&
			   !strcmp(bdf, reset[VFIO_LU_RESET_LOST].bdf);
		if (!preserved)
			ok = !has_ovr;
		else if ((on && !mismatch) || in_devs(bdf, keep, nkeep))
			ok = !strcmp(drv, "vfio-pci") && !strcmp(ovr, "vfio-pci");
		else
			ok = strcmp(drv, "vfio-pci") && !has_ovr;
		seen += preserved;
		if (!ok) {
			ksft_print_msg("at module load: %s driver %s override %s (%s)\n", bdf, drv,
				       ovr, preserved ? "preserved" : "not preserved");
			bad++;
		}
	}
	if (f)
		fclose(f);
	if (seen != want)
		ksft_print_msg("%s: %d of %d preserved devices listed\n", VFIO_LU_AT_LOAD, seen,
			       want);
	ksft_test_result(f && !bad && seen == want, "stage2_bind_policy_%s (bind_preserved=%s)\n",
			 on ? "module_binds_vfio_pci" : "left_to_userspace", param);
}

static void stage2(int luo, int state)
{
	int fds[VFIO_LU_MAX_DEVS];
	int session, iommufd, mfd, modfd, ret, i, nvirtio;
	struct record *rec;

	find_devices();
	for (i = 0, nvirtio = 0; i < ndevs; i++)
		nvirtio += devs[i].vendor == VIRTIO_VENDOR;
	ksft_set_plan(17 + 3 * ndevs + 2 * nvirtio);
	bind_policy_at_load();

	vfio_lu_state_done(state);
	session = luo_retrieve_session(luo, SESSION_NAME);
	ksft_test_result(session >= 0, "stage2_retrieve_session\n");
	if (session < 0)
		ksft_exit_fail_msg("retrieve session: %s\n", strerror(-session));
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		ksft_exit_fail_msg("open /dev/iommu: %s\n", strerror(errno));

	ret = luo_session_finish(session);
	ksft_test_result(ret == -EBUSY, "stage2_finish_fails_before_retrieve (%s)\n",
			 strerror(-ret));

	mfd = luo_session_retrieve_fd(session, RECORD_TOKEN);
	rec = mfd < 0 ? MAP_FAILED : mmap(NULL, sizeof(*rec), PROT_READ, MAP_SHARED, mfd, 0);
	ksft_test_result(rec != MAP_FAILED && rec->ndevs == ndevs,
			 "stage2_retrieve_stage1_record\n");
	if (rec == MAP_FAILED || rec->ndevs != ndevs)
		ksft_exit_fail_msg("no record of stage 1, or not for %d devices\n", ndevs);

	/* Nobody else opens a preserved device before its file is retrieved. */
	for (i = 0; i < ndevs; i++)
		ksft_test_result(open_refused(rec->dev[i].bdf, false),
				 "stage2_cdev_open_refused_before_retrieve %s\n", rec->dev[i].bdf);
	ksft_test_result(open_refused(rec->dev[0].bdf, true),
			 "stage2_group_get_device_fd_refused_before_retrieve %s\n",
			 rec->dev[0].bdf);

	for (i = 0; i < ndevs; i++) {
		fds[i] = luo_session_retrieve_fd(session, DEV_TOKEN(i));
		if (fds[i] < 0)
			ksft_print_msg("%s: retrieve: %s\n", rec->dev[i].bdf, strerror(-fds[i]));
		ksft_test_result(fds[i] >= 0 && is_retrieved_file_of(fds[i], rec->dev[i].bdf),
				 "stage2_retrieve %s\n", rec->dev[i].bdf);
	}
	/* Reset by the kexec's freeze: the status the VMM set reads as reset, from the device. */
	for (i = 0; i < ndevs; i++) {
		int status;

		if (rec->dev[i].vendor != VIRTIO_VENDOR)
			continue;
		status = vfio_lu_virtio_status_sysfs(rec->dev[i].bdf);
		ksft_test_result(status == 0,
				 "stage2_virtio_status_reset_before_bind %s (status %d)\n",
				 rec->dev[i].bdf, status);
	}
	/*
	 * A mark in the device, set through sysfs after retrieve: the bind must
	 * not reset the device again (reset at freeze, held off since).
	 */
	for (i = 0; i < ndevs; i++)
		if (rec->dev[i].vendor == VIRTIO_VENDOR &&
		    vfio_lu_virtio_status_sysfs_rw(rec->dev[i].bdf, VIRTIO_STATUS_MARK) !=
		    VIRTIO_STATUS_MARK)
			ksft_print_msg("%s: cannot set the virtio status through sysfs\n",
				       rec->dev[i].bdf);
	ret = luo_session_retrieve_fd(session, DEV_TOKEN(ndevs));
	ksft_test_result(ret == -ENOENT, "stage2_retrieve_unknown_token_fails (%s)\n",
			 strerror(-ret));

	/*
	 * Retrieved but not bound, a device is still held off: nobody can open,
	 * and so reset, it before its VMM binds the retrieved file.
	 */
	for (i = 0; i < ndevs && open_refused(rec->dev[i].bdf, false); i++)
		;
	ksft_test_result(i == ndevs, "stage2_cdev_open_refused_until_bind\n");
	ksft_test_result(open_refused(rec->dev[0].bdf, true),
			 "stage2_group_get_device_fd_refused_until_bind %s\n", rec->dev[0].bdf);

	ret = luo_session_finish(session);
	ksft_test_result(ret == -EBUSY, "stage2_finish_fails_before_bind (%s)\n",
			 strerror(-ret));

	for (i = 0; i < ndevs; i++)
		ksft_test_result(fds[i] >= 0 &&
				 device_works(fds[i], iommufd, rec->dev[i].bdf,
					      rec->dev[i].vendor, rec->dev[i].device),
				 "stage2_bind_get_info_config %s\n", rec->dev[i].bdf);
	/* Read back through the bound file: the bind left the device as it was. */
	for (i = 0; i < ndevs; i++) {
		int status;

		if (rec->dev[i].vendor != VIRTIO_VENDOR)
			continue;
		status = fds[i] < 0 ? -EBADF : vfio_lu_virtio_status(fds[i]);
		ksft_test_result(status == VIRTIO_STATUS_MARK,
				 "stage2_bind_does_not_reset %s (status %d, set %d before bind)\n",
				 rec->dev[i].bdf, status, VIRTIO_STATUS_MARK);
	}

	/* Bound, the hold-off is over: the cdev opens (a bind through it would not). */
	for (i = 0; i < ndevs; i++) {
		int fd = vfio_lu_open_cdev(rec->dev[i].bdf);

		if (fd < 0) {
			ksft_print_msg("%s: cdev open after bind: %s\n", rec->dev[i].bdf,
				       strerror(-fd));
			break;
		}
		close(fd);
	}
	ksft_test_result(i == ndevs, "stage2_cdev_opens_after_bind\n");

	ret = luo_session_finish(session);
	ksft_test_result(!ret, "stage2_finish (%s)\n", strerror(-ret));

	/* The files are the VMM's now: they keep working after finish. */
	for (i = 0; i < ndevs && fds[i] >= 0; i++)
		if (!device_works(fds[i], -1, rec->dev[i].bdf, rec->dev[i].vendor,
				  rec->dev[i].device))
			break;
	ksft_test_result(i == ndevs, "stage2_files_work_after_finish\n");

	/* And the session is over: nothing more to retrieve. */
	ret = luo_session_retrieve_fd(session, DEV_TOKEN(0));
	ksft_test_result(ret == -ENOENT, "stage2_no_retrieve_after_finish (%s)\n", strerror(-ret));

	munmap(rec, sizeof(*rec));
	close(mfd);
	for (i = 0; i < ndevs; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	close(session);
	close(iommufd);
	close(luo);

	/* Closed, the devices are free again: their cdevs open as usual. */
	ksft_test_result(!vfio_lu_cdevs_open(devs, ndevs), "stage2_cdevs_open_after_close\n");

	/*
	 * Nothing is preserved any more: the module can go, and come back. The
	 * last references may be dropped a moment after the files are closed
	 * (a file released from a kernel thread is put from a work item): try
	 * for 5 s, and say how long it took and what the module's reference
	 * count was.
	 */
	for (i = 0; i < 50; i++) {
		ret = syscall(SYS_delete_module, VFIO_LU_MODULE, O_NONBLOCK) ? -errno : 0;
		if (ret != -EAGAIN)
			break;
		if (!i) {
			char refs[32] = "?";

			vfio_lu_read_file("/sys/module/" VFIO_LU_MODULE "/refcnt", refs,
					  sizeof(refs));
			ksft_print_msg("module busy after the close (refcnt %s), retrying\n",
				       strtok(refs, "\n") ?: "?");
		}
		usleep(100 * 1000);
	}
	ksft_test_result(!ret, "stage2_module_unloads_after_finish (%s, after %d retries)\n",
			 strerror(-ret), i);
	if (!ret)
		vfio_lu_trace_next_load();
	modfd = open(VFIO_LU_MODULE_PATH, O_RDONLY | O_CLOEXEC);
	ret = modfd < 0 ? -errno : syscall(SYS_finit_module, modfd, "", 0) ? -errno : 0;
	ksft_test_result(!ret, "stage2_module_reloads (%s)\n", strerror(-ret));
	if (modfd >= 0)
		close(modfd);

	/*
	 * The reloaded module finds the handed-over list consumed: it holds
	 * nothing off (and does not read the freed list again).
	 */
	ksft_test_result(!vfio_lu_cdevs_open(devs, ndevs), "stage2_cdevs_open_after_reload\n");
	ksft_finished();
}

int main(int argc, char **argv)
{
	ksft_print_header();
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return luo_test(argc, argv, STATE_SESSION, stage1, stage2);
}
