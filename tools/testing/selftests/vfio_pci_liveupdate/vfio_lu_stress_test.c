// SPDX-License-Identifier: GPL-2.0
/*
 * Stress and abuse of preserved device files in one kernel (stage 1, before
 * the kexec test), each case ending in a documented state; the debug kernel's
 * kmemleak and lockdep watch them (kmemleak_check runs after the stage):
 *
 *  - 1000 preserve/unpreserve cycles of one device over fresh sessions;
 *  - two processes preserving different devices at the same time;
 *  - the VMM closing its device fd while the file is preserved: the session
 *    keeps the device open until it is closed;
 *  - unbinding vfio-pci from a preserved device: the unbind waits for the
 *    session to let the device go, and a kexec meanwhile is refused;
 *  - a device put in D3hot by the VMM: the kexec is refused (EINVAL);
 *  - a thread of the VMM enabling MSI-X and bus mastering in a loop while
 *    the kexec freezes its device, 20 times: the device is never frozen
 *    (reset) with interrupts or bus mastering on;
 *  - 50 times (parallel resets; 5 with serial resets): a kexec cancelled
 *    after a device's freeze queued its reset, the session closed and the
 *    module unloaded at once, then loaded again: no reset of the module
 *    runs after it is gone (KASAN watches).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/pci_regs.h>
#include <linux/reboot.h>

#include "vfio_lu_util.h"
#include "kselftest_harness.h"

#define TOKEN		0x73747265ULL
#define CYCLES		1000
#define CHILD_CYCLES	300
/* Per test: the debug kernel (KASAN, lockdep, kmemleak) is slow under TCG. */
#define TIMEOUT_S	900
/* How many times, 100 ms apart, the unbind test looks for the unbind to start. */
#define UNBIND_POLLS	600
/* Queued resets exist only in parallel mode; serial mode does a few rounds. */
#define UNLOADS		50
#define UNLOADS_SERIAL	5
/*
 * KUnit runs a module's suites at every load: about a tenth of each unload
 * round under the debug kernel. kunit_results checks them once per kernel
 * (stage1.list, stage2.list); the reloads filter them all out, and the
 * teardown puts back KUnit's default filter.
 */
#define KUNIT_FILTER_GLOB	"/sys/module/kunit/parameters/filter_glob"
#define KUNIT_NO_SUITE		"vfio_lu_stress_no_suite"
#define KUNIT_ALL_SUITES	"*.*"

/* The devices given on the command line or in $VFIO_SELFTESTS_BDF. */
static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

FIXTURE(stress) {
	struct vfio_lu_dev *devs;
	struct iommu *iommu;		/* libvfio: an iommufd and its IOAS */
	int ndevs, luo, iommufd;
	bool kunit_filtered;		/* KUNIT_NO_SUITE is set */
};

FIXTURE_SETUP(stress)
{
	self->devs = devs;
	self->ndevs = ndevs;
	ASSERT_LE(2, self->ndevs) TH_LOG("need two devices, %d given", self->ndevs);
	self->luo = luo_open_device();
	ASSERT_LE(0, self->luo) TH_LOG("open " LUO_DEVICE ": %s", strerror(errno));
	self->iommu = iommu_init(MODE_IOMMUFD);
	self->iommufd = self->iommu->iommufd;
}

FIXTURE_TEARDOWN(stress)
{
	if (self->kunit_filtered)
		vfio_lu_write_file(KUNIT_FILTER_GLOB, KUNIT_ALL_SUITES);
	iommu_cleanup(self->iommu);
	close(self->luo);
}

/* @cycles times: a new session, @fd preserved in it, the session closed. */
static int preserve_cycles(int luo, int fd, const char *name, int cycles)
{
	int i, session, ret;

	for (i = 0; i < cycles; i++) {
		session = luo_create_session(luo, name);
		if (session < 0)
			return session;
		ret = luo_session_preserve_fd(session, fd, TOKEN);
		close(session);
		if (ret)
			return ret;
	}
	return 0;
}

static bool device_info_works(int fd)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };

	return !ioctl(fd, VFIO_DEVICE_GET_INFO, &info);
}

/* Every cycle unpreserves what it preserved: the module and the file are as before. */
TEST_F_TIMEOUT(stress, preserve_unpreserve_1000_cycles, TIMEOUT_S)
{
	int fd = vfio_lu_bound_cdev(self->devs[0].bdf, self->iommufd);
	int before = vfio_lu_module_refcnt();

	ASSERT_LE(0, fd);
	ASSERT_LE(0, before);
	EXPECT_EQ(0, preserve_cycles(self->luo, fd, "vfio-lu-stress", CYCLES));
	EXPECT_EQ(before, vfio_lu_module_refcnt());
	EXPECT_TRUE(device_info_works(fd));
	close(fd);
}

/* Two processes, each its own device, preserving and unpreserving at once. */
TEST_F_TIMEOUT(stress, two_processes_preserve_concurrently, TIMEOUT_S)
{
	int before = vfio_lu_module_refcnt(), status, c;
	pid_t pid[2];

	ASSERT_LE(0, before);
	for (c = 0; c < 2; c++) {
		pid[c] = fork();
		ASSERT_LE(0, pid[c]);
		if (!pid[c]) {
			char name[32];
			int fd, ret;

			snprintf(name, sizeof(name), "vfio-lu-stress-%d", c);
			fd = vfio_lu_bound_cdev(self->devs[c].bdf, self->iommufd);
			ret = fd < 0 ? fd : preserve_cycles(self->luo, fd, name, CHILD_CYCLES);
			if (ret)
				fprintf(stderr, "# %s: %s\n", self->devs[c].bdf, strerror(-ret));
			_exit(ret ? 1 : 0);
		}
	}
	for (c = 0; c < 2; c++) {
		ASSERT_EQ(pid[c], waitpid(pid[c], &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
			TH_LOG("process %d (%s) failed", c, self->devs[c].bdf);
	}
	EXPECT_EQ(before, vfio_lu_module_refcnt());
}

/*
 * The VMM closes its device fd while the file is preserved: the session holds
 * the file, so the device stays open (a new cdev fd cannot bind: EINVAL, the
 * cdev path's single open) until the session is closed.
 */
TEST_F_TIMEOUT(stress, close_device_fd_while_preserved, TIMEOUT_S)
{
	int fd = vfio_lu_bound_cdev(self->devs[0].bdf, self->iommufd);
	int before = vfio_lu_module_refcnt(), session, fd2;

	ASSERT_LE(0, fd);
	session = luo_create_session(self->luo, "vfio-lu-stress-close");
	ASSERT_LE(0, session);
	ASSERT_EQ(0, luo_session_preserve_fd(session, fd, TOKEN));
	close(fd);
	/* One for the file, one for the handler's list of preserved devices. */
	EXPECT_EQ(before + 2, vfio_lu_module_refcnt());

	fd2 = vfio_lu_open_cdev(self->devs[0].bdf);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(-EINVAL, __vfio_device_bind_iommufd(fd2, self->iommufd, NULL));

	close(session);
	EXPECT_EQ(before, vfio_lu_module_refcnt());
	EXPECT_EQ(0, __vfio_device_bind_iommufd(fd2, self->iommufd, NULL));
	EXPECT_TRUE(device_info_works(fd2));
	close(fd2);
}

/*
 * Unbinding vfio-pci from a preserved device: vfio-pci's remove waits, with
 * the device lock held, until the last user of the device is gone, and the
 * session is one (the driver link in sysfs is already gone). Meanwhile a
 * kexec is refused (its freeze cannot take the device lock). Closing the
 * session lets the unbind finish; the device binds to vfio-pci again
 * (driver_override).
 */
TEST_F_TIMEOUT(stress, unbind_vfio_pci_while_preserved, TIMEOUT_S)
{
	/*
	 * The second device, which has an FLR: under the debug kernel, QEMU's
	 * TCG hung once in the bus reset of the edu device that vfio-pci does
	 * when this test's close races with the unbind.
	 */
	const char *bdf = self->devs[1].bdf;
	int fd = vfio_lu_bound_cdev(bdf, self->iommufd), session, kmsg, ret, status;
	char drv[64], needle[160];
	pid_t pid;

	ASSERT_LE(0, fd);
	session = luo_create_session(self->luo, "vfio-lu-stress-unbind");
	ASSERT_LE(0, session);
	ASSERT_EQ(0, luo_session_preserve_fd(session, fd, TOKEN));

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		/* Not a user of the device itself, or the unbind waits for us. */
		close(fd);
		close(session);
		_exit(vfio_lu_write_file("/sys/bus/pci/drivers/vfio-pci/unbind", bdf) ? 1 : 0);
	}
	/*
	 * The unbind holds the device lock once the driver link is gone
	 * (driver_sysfs_remove() comes before the remove that waits); without
	 * it the kexec below would really happen.
	 */
	for (int poll = 0; poll < UNBIND_POLLS; poll++) {
		vfio_lu_driver(bdf, drv, sizeof(drv));
		if (!drv[0])
			break;
		usleep(100000);
	}
	ASSERT_STREQ("", drv) TH_LOG("the unbind did not start in %d s", UNBIND_POLLS / 10);
	sleep(1);
	EXPECT_EQ(0, waitpid(pid, &status, WNOHANG)) TH_LOG("the unbind did not wait");

	kmsg = vfio_lu_kmsg_open();
	ret = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		      LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
	EXPECT_EQ(-EBUSY, ret);
	snprintf(needle, sizeof(needle), "%s: %s", bdf,
		 "live update: cannot freeze: the device or its upstream bridge is locked");
	EXPECT_TRUE(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle));
	if (kmsg >= 0)
		close(kmsg);

	close(session);
	close(fd);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	vfio_lu_driver(bdf, drv, sizeof(drv));
	EXPECT_STREQ("", drv);

	EXPECT_EQ(0, vfio_lu_write_file(PCI_DEVICES "/../drivers_probe", bdf));
	vfio_lu_driver(bdf, drv, sizeof(drv));
	EXPECT_STREQ("vfio-pci", drv);
	fd = vfio_lu_bound_cdev(bdf, self->iommufd);
	EXPECT_LE(0, fd);
	if (fd >= 0)
		close(fd);
}

#define RACES		20
/* Power states in the PM control register */
#define PM_D0		0
#define PM_D3HOT	3

/* Set the power state field of the PM capability's control register, through the device fd. */
static int set_power_state(int fd, off_t cfg, uint16_t state)
{
	uint8_t conf[256];
	uint16_t pmcsr;
	int pos, hops = 0;

	if (pread(fd, conf, sizeof(conf), cfg) != sizeof(conf))
		return -EIO;
	for (pos = conf[PCI_CAPABILITY_LIST] & ~3; pos >= 0x40 && hops++ < 48;
	     pos = conf[pos + PCI_CAP_LIST_NEXT] & ~3) {
		if (conf[pos + PCI_CAP_LIST_ID] != PCI_CAP_ID_PM)
			continue;
		memcpy(&pmcsr, conf + pos + PCI_PM_CTRL, sizeof(pmcsr));
		pmcsr = (pmcsr & ~PCI_PM_CTRL_STATE_MASK) | state;
		return pwrite(fd, &pmcsr, sizeof(pmcsr), cfg + pos + PCI_PM_CTRL) == sizeof(pmcsr) ?
		       0 : -EIO;
	}
	return -ENOENT;
}

/*
 * The VMM put a preserved device in D3hot through its config space: the
 * kexec is refused with EINVAL and a log line naming the device; back in
 * D0, the device freezes again (the second device refuses then, with INTx).
 */
TEST_F_TIMEOUT(stress, kexec_refused_with_a_device_in_d3hot, TIMEOUT_S)
{
	struct vfio_region_info cfg = {
		.argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	const char *bdf = self->devs[1].bdf;
	int fd, session, kmsg, ret;
	char needle[128];

	fd = vfio_lu_bound_cdev(bdf, self->iommufd);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &cfg));
	session = luo_create_session(self->luo, "vfio-lu-stress-d3");
	ASSERT_LE(0, session);
	ASSERT_EQ(0, luo_session_preserve_fd(session, fd, TOKEN));
	ASSERT_EQ(0, set_power_state(fd, cfg.offset, PM_D3HOT));

	kmsg = vfio_lu_kmsg_open();
	ret = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		      LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
	EXPECT_EQ(-EINVAL, ret);
	snprintf(needle, sizeof(needle), "%s: live update: cannot freeze: the device is in D3Hot",
		 bdf);
	EXPECT_TRUE(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle)) TH_LOG("no log line '%s'", needle);
	if (kmsg >= 0)
		close(kmsg);
	/* Refused before anything was done: the device file works, back to D0. */
	EXPECT_EQ(0, set_power_state(fd, cfg.offset, PM_D0));
	close(session);
	close(fd);
}

/* MSI-X vector 0 on (an eventfd trigger) or off, through a bound device fd. */
static int set_msix(int fd, bool on)
{
	return vfio_lu_set_irq(fd, VFIO_PCI_MSIX_IRQ_INDEX, on);
}

/* A VMM thread that keeps turning MSI-X and bus mastering on. */
struct racer {
	int fd;
	off_t cmd_off;		/* the command register in the config region */
	atomic_bool stop;
	int msix_ok, msix_eio, cmd_ok, cmd_eio;
	/*
	 * MSI-X enabled, then its disable refused with EIO: the device froze
	 * in between, with MSI-X on, which a freeze must never allow; so the
	 * enable took effect on a frozen device.
	 */
	int msix_while_frozen;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	uint16_t cmd = PCI_COMMAND_MEMORY;

	while (!atomic_load(&r->stop)) {
		int ret = set_msix(r->fd, true);

		if (!ret) {
			r->msix_ok++;
			if (set_msix(r->fd, false) == -EIO)
				r->msix_while_frozen++;
		} else if (ret == -EIO) {
			r->msix_eio++;
		}
		/* Frozen, the read fails too: write what was read last. */
		if (pread(r->fd, &cmd, sizeof(cmd), r->cmd_off) != sizeof(cmd))
			cmd &= PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER;
		cmd |= PCI_COMMAND_MASTER;
		if (pwrite(r->fd, &cmd, sizeof(cmd), r->cmd_off) == sizeof(cmd))
			r->cmd_ok++;
		else if (errno == EIO)
			r->cmd_eio++;
		/* Mostly off: give the freeze its chance to win. */
		usleep(200);
	}
	return NULL;
}

/*
 * Another thread of the VMM enables MSI-X and bus mastering on a device, in
 * a loop, while the kexec freezes it (and is then refused by the second
 * device, which has INTx on). Whatever the timing, the freeze either refuses
 * (interrupts on, EBUSY) or wins: then no racing call takes effect while
 * the device is frozen, and the module's record of the reset that followed
 * (debugfs resets, read from the device) shows interrupts off and bus
 * mastering off when the reset began.
 */
TEST_F_TIMEOUT(stress, racing_vmm_calls_do_not_undo_a_freeze, TIMEOUT_S)
{
	struct vfio_region_info cfg = {
		.argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	const char *bdf = self->devs[0].bdf;
	struct vfio_lu_reset_record rec, prev;
	int i, session, fd0, fd1, ret, frozen = 0;
	struct racer r = {};
	pthread_t thread;

	if (access(VFIO_LU_RESETS, R_OK))
		SKIP(return, "no %s (fault injection off)", VFIO_LU_RESETS);
	fd0 = vfio_lu_bound_cdev(bdf, self->iommufd);
	fd1 = vfio_lu_bound_cdev(self->devs[1].bdf, self->iommufd);
	ASSERT_LE(0, fd0);
	ASSERT_LE(0, fd1);
	ASSERT_EQ(0, ioctl(fd0, VFIO_DEVICE_GET_REGION_INFO, &cfg));
	ASSERT_EQ(0, vfio_lu_set_intx(fd1, true));
	for (i = 0; i < RACES; i++) {
		session = luo_create_session(self->luo, "vfio-lu-stress-race");
		ASSERT_LE(0, session);
		ASSERT_EQ(0, luo_session_preserve_fd(session, fd0, TOKEN));
		ASSERT_EQ(0, luo_session_preserve_fd(session, fd1, TOKEN + 1));
		if (vfio_lu_last_reset(bdf, &prev))
			prev.seq = 0;
		r = (struct racer){ .fd = fd0, .cmd_off = cfg.offset + PCI_COMMAND };
		ASSERT_EQ(0, pthread_create(&thread, NULL, race, &r));
		usleep(1000 * (i % 5));
		ret = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			      LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
		atomic_store(&r.stop, true);
		pthread_join(thread, NULL);
		ASSERT_EQ(-EBUSY, ret) TH_LOG("round %d", i);
		close(session);
		EXPECT_EQ(0, r.msix_while_frozen)
			TH_LOG("round %d: MSI-X enabled while the device was frozen", i);
		set_msix(fd0, false);
		if (vfio_lu_last_reset(bdf, &rec) || rec.seq == prev.seq)
			continue;	/* refused by this device: interrupts were on */
		frozen++;
		EXPECT_EQ(0, rec.irqs) TH_LOG("round %d: frozen and reset with MSI-X on", i);
		EXPECT_EQ(0, rec.before & PCI_COMMAND_MASTER)
			TH_LOG("round %d: bus mastering on when the reset began (%#x)", i,
			       rec.before);
		TH_LOG("round %d: frozen; racing calls: MSI-X %d ok %d EIO, command %d ok %d EIO",
		       i, r.msix_ok, r.msix_eio, r.cmd_ok, r.cmd_eio);
	}
	/* The freeze must have won some rounds, or nothing was tested. */
	EXPECT_LT(0, frozen);
	vfio_lu_set_intx(fd1, false);
	close(fd1);
	close(fd0);
}

/*
 * A cancelled kexec unfreezes the devices whose freeze queued a reset; the
 * module may be unloaded as soon as their session is closed. The resets run
 * on the module's own workqueue, which the unload destroys after the last
 * one: unloading at once, 50 times, is clean under KASAN, and the module
 * loads again each time. The second device, with interrupts on, refuses.
 */
TEST_F_TIMEOUT(stress, unload_right_after_a_cancelled_kexec, TIMEOUT_S)
{
	/* Two devices with an FLR: a bus reset at each open would take longer. */
	const char *first = self->devs[0].bdf, *last = self->devs[1].bdf;
	int i, session, fd0, fd1, modfd, ret, rounds;
	char params[256];

	vfio_lu_module_params(params, sizeof(params));
	rounds = vfio_lu_param_on("serial_reset") ? UNLOADS_SERIAL : UNLOADS;
	/* The device files stay open and bound: only their preservation comes and goes. */
	fd0 = vfio_lu_bound_cdev(first, self->iommufd);
	fd1 = vfio_lu_bound_cdev(last, self->iommufd);
	ASSERT_LE(0, fd0);
	ASSERT_LE(0, fd1);
	/* The last device refuses the kexec, after the first froze. */
	ASSERT_EQ(0, vfio_lu_set_intx(fd1, true));
	self->kunit_filtered = !vfio_lu_write_file(KUNIT_FILTER_GLOB, KUNIT_NO_SUITE);
	for (i = 0; i < rounds; i++) {
		session = luo_create_session(self->luo, "vfio-lu-stress-unload");
		ASSERT_LE(0, session);
		ASSERT_EQ(0, luo_session_preserve_fd(session, fd0, TOKEN));
		ASSERT_EQ(0, luo_session_preserve_fd(session, fd1, TOKEN + 1));
		ret = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			      LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
		ASSERT_EQ(-EBUSY, ret) TH_LOG("round %d", i);
		close(session);
		ret = syscall(SYS_delete_module, VFIO_LU_MODULE, O_NONBLOCK) ? -errno : 0;
		ASSERT_EQ(0, ret) TH_LOG("round %d: unload: %s", i, strerror(-ret));
		vfio_lu_trace_next_load();
		modfd = open(VFIO_LU_MODULE_PATH, O_RDONLY | O_CLOEXEC);
		ASSERT_LE(0, modfd);
		ret = syscall(SYS_finit_module, modfd, params, 0) ? -errno : 0;
		close(modfd);
		ASSERT_EQ(0, ret) TH_LOG("round %d: load: %s", i, strerror(-ret));
	}
	vfio_lu_set_intx(fd1, false);
	close(fd1);
	close(fd0);
}

int main(int argc, char **argv)
{
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return test_harness_run(argc, argv);
}
