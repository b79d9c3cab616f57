// SPDX-License-Identifier: GPL-2.0
/*
 * The uAPI of the vfio-pci live update handler in one kernel, without a
 * kexec: which files LIVEUPDATE_SESSION_PRESERVE_FD takes and which it
 * refuses (with which errno: group files, other files, unbound files, an
 * SR-IOV VF), that a device has at most one preserved file, and that
 * closing a session unpreserves its files.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>

#include "vfio_lu_util.h"
#include "kselftest_harness.h"

#define TOKEN	0x7666696fULL

/* The devices given on the command line or in $VFIO_SELFTESTS_BDF. */
static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

/*
 * Per test: each opens and closes a device (an FLR each), under the debug
 * kernel in a TCG guest beside four others; the harness's 30 s is too short.
 */
#define TIMEOUT_S	300

FIXTURE(luo) {
	struct vfio_lu_dev dev;		/* the first device given */
	struct iommu *iommu;		/* libvfio: an iommufd and its IOAS */
	int luo, session, iommufd;
};

FIXTURE_SETUP(luo)
{
	ASSERT_LT(0, ndevs);
	self->dev = devs[0];
	self->luo = luo_open_device();
	ASSERT_LE(0, self->luo) TH_LOG("open " LUO_DEVICE ": %s", strerror(errno));
	self->session = luo_create_session(self->luo, "vfio-lu-uapi");
	ASSERT_LE(0, self->session) TH_LOG("create session: %s", strerror(-self->session));
	self->iommu = iommu_init(MODE_IOMMUFD);
	self->iommufd = self->iommu->iommufd;
}

FIXTURE_TEARDOWN(luo)
{
	iommu_cleanup(self->iommu);
	close(self->session);
	close(self->luo);
}

TEST_F_TIMEOUT(luo, preserve_cdev_fd, TIMEOUT_S)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd);

	ASSERT_LE(0, fd);
	EXPECT_EQ(0, luo_session_preserve_fd(self->session, fd, TOKEN));
	close(fd);
}

/*
 * LUO holds the handler's module for every preserved file, and for the
 * handler's list of preserved devices while any file is preserved; only then.
 */
TEST_F_TIMEOUT(luo, module_pinned_only_while_preserved, TIMEOUT_S)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), before = vfio_lu_module_refcnt();

	ASSERT_LE(0, fd);
	ASSERT_LE(0, before);
	ASSERT_EQ(0, luo_session_preserve_fd(self->session, fd, TOKEN));
	/* One for the file, one for the handler's list of preserved devices. */
	EXPECT_EQ(before + 2, vfio_lu_module_refcnt());
	close(self->session);
	self->session = -1;
	EXPECT_EQ(before, vfio_lu_module_refcnt());
	close(fd);
}

/* A device file from VFIO_GROUP_GET_DEVICE_FD: no handler takes it. */
TEST_F_TIMEOUT(luo, group_device_fd_refused, TIMEOUT_S)
{
	struct iommu *type1 = iommu_init(MODE_VFIO_TYPE1V2_IOMMU);
	struct vfio_pci_device *device = vfio_pci_device_alloc(self->dev.bdf, type1);
	int container = type1->container_fd, groupfd, devfd;

	/*
	 * libvfio's group and container path, up to the device file: the
	 * group (viable) in a type1v2 container, VFIO_GROUP_GET_DEVICE_FD.
	 */
	vfio_pci_group_setup(device, self->dev.bdf);
	vfio_container_set_iommu(device);
	__vfio_pci_group_get_device_fd(device, self->dev.bdf, NULL);
	groupfd = device->group_fd;
	devfd = device->fd;
	ASSERT_LE(0, devfd) TH_LOG("VFIO_GROUP_GET_DEVICE_FD: %s", strerror(errno));

	EXPECT_EQ(-ENOENT, luo_session_preserve_fd(self->session, devfd, TOKEN));
	/* Nor the group file itself, nor the container. */
	EXPECT_EQ(-ENOENT, luo_session_preserve_fd(self->session, groupfd, TOKEN + 1));
	EXPECT_EQ(-ENOENT, luo_session_preserve_fd(self->session, container, TOKEN + 2));

	close(devfd);
	close(groupfd);
	vfio_pci_device_free(device);
	iommu_cleanup(type1);
}

/* A file no handler knows: a pipe. And iommufd, which has no handler here. */
TEST_F_TIMEOUT(luo, non_vfio_fd_refused, TIMEOUT_S)
{
	int p[2];

	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	EXPECT_EQ(-ENOENT, luo_session_preserve_fd(self->session, p[0], TOKEN));
	EXPECT_EQ(-ENOENT, luo_session_preserve_fd(self->session, self->iommufd, TOKEN));
	EXPECT_EQ(-EBADF, luo_session_preserve_fd(self->session, 1000, TOKEN));
	close(p[0]);
	close(p[1]);
}

TEST_F_TIMEOUT(luo, same_fd_twice_refused, TIMEOUT_S)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), fd2;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, luo_session_preserve_fd(self->session, fd, TOKEN));
	/* The same file under another token: LUO tracks preserved files. */
	EXPECT_EQ(-EBUSY, luo_session_preserve_fd(self->session, fd, TOKEN + 1));
	/* A token already used in the session. */
	fd2 = memfd_create("vfio-lu-uapi", MFD_CLOEXEC);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(-EEXIST, luo_session_preserve_fd(self->session, fd2, TOKEN));
	close(fd2);
	close(fd);
}

TEST_F_TIMEOUT(luo, closing_the_session_unpreserves, TIMEOUT_S)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), session2;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, luo_session_preserve_fd(self->session, fd, TOKEN));
	close(self->session);
	self->session = -1;

	/* The same file can be preserved again, in a new session. */
	session2 = luo_create_session(self->luo, "vfio-lu-uapi-2");
	ASSERT_LE(0, session2);
	EXPECT_EQ(0, luo_session_preserve_fd(session2, fd, TOKEN));
	close(session2);
	close(fd);
}

/*
 * One device, one preserved file: a second file of a preserved device is
 * refused, in any session, until the first is no longer preserved.
 */
TEST_F_TIMEOUT(luo, second_file_of_a_device_refused, TIMEOUT_S)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), fd2, session2;

	ASSERT_LE(0, fd);
	fd2 = vfio_lu_open_cdev(self->dev.bdf);
	ASSERT_LE(0, fd2);
	session2 = luo_create_session(self->luo, "vfio-lu-uapi-2");
	ASSERT_LE(0, session2);
	ASSERT_EQ(0, luo_session_preserve_fd(self->session, fd, TOKEN));

	/* LUO refuses it: the handler's get_id names the device, not the file. */
	EXPECT_EQ(-EBUSY, luo_session_preserve_fd(self->session, fd2, TOKEN + 1));
	EXPECT_EQ(-EBUSY, luo_session_preserve_fd(session2, fd2, TOKEN));

	/*
	 * The first file's session closed and the file closed: the device is
	 * free for the second, once it is bound.
	 */
	close(self->session);
	self->session = -1;
	close(fd);
	ASSERT_EQ(0, __vfio_device_bind_iommufd(fd2, self->iommufd, NULL));
	EXPECT_EQ(0, luo_session_preserve_fd(session2, fd2, TOKEN));
	close(session2);
	close(fd2);
}

/*
 * Only a file that holds the device open may be preserved: one bound with
 * VFIO_DEVICE_BIND_IOMMUFD. An unbound cdev file is refused with EBADFD and
 * a log line naming the device (its freeze would reset a device that
 * another process may be driving); bound, the same file is taken.
 */
TEST_F_TIMEOUT(luo, unbound_cdev_fd_refused, TIMEOUT_S)
{
	int fd = vfio_lu_open_cdev(self->dev.bdf), kmsg = vfio_lu_kmsg_open();
	char needle[160];

	ASSERT_LE(0, fd);
	EXPECT_EQ(-EBADFD, luo_session_preserve_fd(self->session, fd, TOKEN));
	snprintf(needle, sizeof(needle),
		 "%s: live update: cannot preserve: the file is not bound to iommufd",
		 self->dev.bdf);
	EXPECT_TRUE(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle)) TH_LOG("no log line '%s'", needle);
	/* Nothing of the refused file stays behind: bound, it is preserved. */
	ASSERT_EQ(0, __vfio_device_bind_iommufd(fd, self->iommufd, NULL));
	EXPECT_EQ(0, luo_session_preserve_fd(self->session, fd, TOKEN));
	if (kmsg >= 0)
		close(kmsg);
	close(fd);
}

/* The first device given with this vendor:device, or NULL. */
static const char *find_dev(unsigned int vendor, unsigned int device, char *bdf, size_t len)
{
	for (int i = 0; i < ndevs; i++)
		if (devs[i].vendor == vendor && devs[i].device == device) {
			snprintf(bdf, len, "%s", devs[i].bdf);
			return bdf;
		}
	return NULL;
}

/*
 * An SR-IOV VF is not taken (ENOENT, logged with its address): QEMU's igb
 * has VFs, created here through vfio-pci on the PF, and the first one is
 * bound to vfio-pci and opened through its cdev.
 */
TEST_F_TIMEOUT(luo, sriov_vf_refused, TIMEOUT_S)
{
	char pf[32], path[PATH_MAX], needle[128];
	char *vf;
	int fd, kmsg;

	ASSERT_NE(NULL, find_dev(0x8086, 0x10c9, pf, sizeof(pf))) TH_LOG("no igb in the test bed");
	ASSERT_EQ(0, vfio_lu_write_file("/sys/module/vfio_pci/parameters/enable_sriov", "Y"));
	sysfs_sriov_numvfs_set(pf, 1);
	vf = sysfs_sriov_vf_bdf_get(pf, 0);
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", vf);
	ASSERT_EQ(0, vfio_lu_write_file(path, "vfio-pci"));
	ASSERT_EQ(0, vfio_lu_write_file(PCI_DEVICES "/../drivers_probe", vf));

	fd = vfio_lu_open_cdev(vf);
	ASSERT_LE(0, fd) TH_LOG("%s: cdev open: %s", vf, strerror(-fd));
	kmsg = vfio_lu_kmsg_open();
	EXPECT_EQ(-ENOENT, luo_session_preserve_fd(self->session, fd, TOKEN));
	snprintf(needle, sizeof(needle), "%s: live update: SR-IOV VFs cannot be preserved", vf);
	EXPECT_TRUE(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle)) TH_LOG("no log line '%s'", needle);
	if (kmsg >= 0)
		close(kmsg);
	close(fd);
	free(vf);
	sysfs_sriov_numvfs_set(pf, 0);
	vfio_lu_write_file("/sys/module/vfio_pci/parameters/enable_sriov", "N");
}

int main(int argc, char **argv)
{
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return test_harness_run(argc, argv);
}
