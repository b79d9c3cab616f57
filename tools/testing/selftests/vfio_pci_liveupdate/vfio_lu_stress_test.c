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
 *    session to let the device go, and a kexec meanwhile is refused.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/reboot.h>

#include "vfio_lu_util.h"
#include "kselftest_harness.h"

#define TOKEN		0x73747265ULL
#define CYCLES		1000
#define CHILD_CYCLES	300
/* Per test: the debug kernel (KASAN, lockdep, kmemleak) is slow under TCG. */
#define TIMEOUT_S	300

FIXTURE(stress) {
	struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
	int ndevs, luo, iommufd;
};

FIXTURE_SETUP(stress)
{
	self->ndevs = vfio_lu_find_devs(self->devs, VFIO_LU_MAX_DEVS);
	ASSERT_LE(2, self->ndevs) TH_LOG("need two devices, found %d", self->ndevs);
	self->luo = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->luo) TH_LOG("open /dev/liveupdate: %s", strerror(errno));
	self->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->iommufd) TH_LOG("open /dev/iommu: %s", strerror(errno));
}

FIXTURE_TEARDOWN(stress)
{
	close(self->iommufd);
	close(self->luo);
}

/* @cycles times: a new session, @fd preserved in it, the session closed. */
static int preserve_cycles(int luo, int fd, const char *name, int cycles)
{
	int i, session, ret;

	for (i = 0; i < cycles; i++) {
		session = vfio_lu_create_session(luo, name);
		if (session < 0)
			return session;
		ret = vfio_lu_preserve(session, fd, TOKEN);
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
	session = vfio_lu_create_session(self->luo, "vfio-lu-stress-close");
	ASSERT_LE(0, session);
	ASSERT_EQ(0, vfio_lu_preserve(session, fd, TOKEN));
	close(fd);
	/* One for the file, one for the handler's list of preserved devices. */
	EXPECT_EQ(before + 2, vfio_lu_module_refcnt());

	fd2 = vfio_lu_open_cdev(self->devs[0].bdf);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(-EINVAL, vfio_lu_bind(fd2, self->iommufd));

	close(session);
	EXPECT_EQ(before, vfio_lu_module_refcnt());
	EXPECT_EQ(0, vfio_lu_bind(fd2, self->iommufd));
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
	session = vfio_lu_create_session(self->luo, "vfio-lu-stress-unbind");
	ASSERT_LE(0, session);
	ASSERT_EQ(0, vfio_lu_preserve(session, fd, TOKEN));

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		/* Not a user of the device itself, or the unbind waits for us. */
		close(fd);
		close(session);
		_exit(vfio_lu_write_file("/sys/bus/pci/drivers/vfio-pci/unbind", bdf) ? 1 : 0);
	}
	sleep(2);
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

TEST_HARNESS_MAIN
