// SPDX-License-Identifier: GPL-2.0
/*
 * The uAPI of the vfio-pci live update handler in one kernel, without a
 * kexec: which files LIVEUPDATE_SESSION_PRESERVE_FD takes and which it
 * refuses (with which errno: group files, other files, unbound files, an
 * SR-IOV VF), that a device has at most one preserved file, and that
 * closing a session unpreserves its files.
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "vfio_lu_util.h"
#include "kselftest_harness.h"

#define TOKEN	0x7666696fULL

FIXTURE(luo) {
	struct vfio_lu_dev dev;		/* the first emulated device */
	int luo, session, iommufd;
};

FIXTURE_SETUP(luo)
{
	struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];

	ASSERT_LT(0, vfio_lu_find_devs(devs, VFIO_LU_MAX_DEVS));
	self->dev = devs[0];
	self->luo = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->luo) TH_LOG("open /dev/liveupdate: %s", strerror(errno));
	self->session = vfio_lu_create_session(self->luo, "vfio-lu-uapi");
	ASSERT_LE(0, self->session) TH_LOG("create session: %s", strerror(-self->session));
	self->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->iommufd) TH_LOG("open /dev/iommu: %s", strerror(errno));
}

FIXTURE_TEARDOWN(luo)
{
	close(self->iommufd);
	close(self->session);
	close(self->luo);
}

TEST_F(luo, preserve_cdev_fd)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd);

	ASSERT_LE(0, fd);
	EXPECT_EQ(0, vfio_lu_preserve(self->session, fd, TOKEN));
	close(fd);
}

/*
 * LUO holds the handler's module for every preserved file, and for the
 * handler's list of preserved devices while any file is preserved; only then.
 */
TEST_F(luo, module_pinned_only_while_preserved)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), before = vfio_lu_module_refcnt();

	ASSERT_LE(0, fd);
	ASSERT_LE(0, before);
	ASSERT_EQ(0, vfio_lu_preserve(self->session, fd, TOKEN));
	/* One for the file, one for the handler's list of preserved devices. */
	EXPECT_EQ(before + 2, vfio_lu_module_refcnt());
	close(self->session);
	self->session = -1;
	EXPECT_EQ(before, vfio_lu_module_refcnt());
	close(fd);
}

/* A device file from VFIO_GROUP_GET_DEVICE_FD: no handler takes it. */
TEST_F(luo, group_device_fd_refused)
{
	char path[PATH_MAX], link[PATH_MAX], group[PATH_MAX];
	struct vfio_group_status status = { .argsz = sizeof(status) };
	int container, groupfd, devfd;
	ssize_t n;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/iommu_group", self->dev.bdf);
	n = readlink(path, link, sizeof(link) - 1);
	ASSERT_LT(0, n) TH_LOG("%s: no IOMMU group", self->dev.bdf);
	link[n] = '\0';
	snprintf(group, sizeof(group), "/dev/vfio/%s", basename(link));

	container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, container) TH_LOG("open /dev/vfio/vfio: %s", strerror(errno));
	groupfd = open(group, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, groupfd) TH_LOG("open %s: %s", group, strerror(errno));
	ASSERT_EQ(0, ioctl(groupfd, VFIO_GROUP_GET_STATUS, &status));
	ASSERT_TRUE(status.flags & VFIO_GROUP_FLAGS_VIABLE);
	ASSERT_EQ(0, ioctl(groupfd, VFIO_GROUP_SET_CONTAINER, &container))
		TH_LOG("VFIO_GROUP_SET_CONTAINER: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		TH_LOG("VFIO_SET_IOMMU: %s", strerror(errno));
	devfd = ioctl(groupfd, VFIO_GROUP_GET_DEVICE_FD, self->dev.bdf);
	ASSERT_LE(0, devfd) TH_LOG("VFIO_GROUP_GET_DEVICE_FD: %s", strerror(errno));

	EXPECT_EQ(-ENOENT, vfio_lu_preserve(self->session, devfd, TOKEN));
	/* Nor the group file itself, nor the container. */
	EXPECT_EQ(-ENOENT, vfio_lu_preserve(self->session, groupfd, TOKEN + 1));
	EXPECT_EQ(-ENOENT, vfio_lu_preserve(self->session, container, TOKEN + 2));

	close(devfd);
	close(groupfd);
	close(container);
}

/* A file no handler knows: a pipe. And iommufd, which has no handler here. */
TEST_F(luo, non_vfio_fd_refused)
{
	int p[2];

	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	EXPECT_EQ(-ENOENT, vfio_lu_preserve(self->session, p[0], TOKEN));
	EXPECT_EQ(-ENOENT, vfio_lu_preserve(self->session, self->iommufd, TOKEN));
	EXPECT_EQ(-EBADF, vfio_lu_preserve(self->session, 1000, TOKEN));
	close(p[0]);
	close(p[1]);
}

TEST_F(luo, same_fd_twice_refused)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), fd2;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, vfio_lu_preserve(self->session, fd, TOKEN));
	/* The same file under another token: LUO tracks preserved files. */
	EXPECT_EQ(-EBUSY, vfio_lu_preserve(self->session, fd, TOKEN + 1));
	/* A token already used in the session. */
	fd2 = memfd_create("vfio-lu-uapi", MFD_CLOEXEC);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(-EEXIST, vfio_lu_preserve(self->session, fd2, TOKEN));
	close(fd2);
	close(fd);
}

TEST_F(luo, closing_the_session_unpreserves)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), session2;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, vfio_lu_preserve(self->session, fd, TOKEN));
	close(self->session);
	self->session = -1;

	/* The same file can be preserved again, in a new session. */
	session2 = vfio_lu_create_session(self->luo, "vfio-lu-uapi-2");
	ASSERT_LE(0, session2);
	EXPECT_EQ(0, vfio_lu_preserve(session2, fd, TOKEN));
	close(session2);
	close(fd);
}

/*
 * One device, one preserved file: a second file of a preserved device is
 * refused, in any session, until the first is no longer preserved.
 */
TEST_F(luo, second_file_of_a_device_refused)
{
	int fd = vfio_lu_bound_cdev(self->dev.bdf, self->iommufd), fd2, session2;

	ASSERT_LE(0, fd);
	fd2 = vfio_lu_open_cdev(self->dev.bdf);
	ASSERT_LE(0, fd2);
	session2 = vfio_lu_create_session(self->luo, "vfio-lu-uapi-2");
	ASSERT_LE(0, session2);
	ASSERT_EQ(0, vfio_lu_preserve(self->session, fd, TOKEN));

	/* LUO refuses it: the handler's get_id names the device, not the file. */
	EXPECT_EQ(-EBUSY, vfio_lu_preserve(self->session, fd2, TOKEN + 1));
	EXPECT_EQ(-EBUSY, vfio_lu_preserve(session2, fd2, TOKEN));

	/*
	 * The first file's session closed and the file closed: the device is
	 * free for the second, once it is bound.
	 */
	close(self->session);
	self->session = -1;
	close(fd);
	ASSERT_EQ(0, vfio_lu_bind(fd2, self->iommufd));
	EXPECT_EQ(0, vfio_lu_preserve(session2, fd2, TOKEN));
	close(session2);
	close(fd2);
}

/*
 * Only a file that holds the device open may be preserved: one bound with
 * VFIO_DEVICE_BIND_IOMMUFD. An unbound cdev file is refused with EBADFD and
 * a log line naming the device (its freeze would reset a device that
 * another process may be driving); bound, the same file is taken.
 */
TEST_F(luo, unbound_cdev_fd_refused)
{
	int fd = vfio_lu_open_cdev(self->dev.bdf), kmsg = vfio_lu_kmsg_open();
	char needle[160];

	ASSERT_LE(0, fd);
	EXPECT_EQ(-EBADFD, vfio_lu_preserve(self->session, fd, TOKEN));
	snprintf(needle, sizeof(needle),
		 "%s: live update: cannot preserve: the file is not bound to iommufd",
		 self->dev.bdf);
	EXPECT_TRUE(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle)) TH_LOG("no log line '%s'", needle);
	/* Nothing of the refused file stays behind: bound, it is preserved. */
	ASSERT_EQ(0, vfio_lu_bind(fd, self->iommufd));
	EXPECT_EQ(0, vfio_lu_preserve(self->session, fd, TOKEN));
	if (kmsg >= 0)
		close(kmsg);
	close(fd);
}

/* The first device with this vendor:device, or NULL. */
static const char *find_dev(unsigned int vendor, unsigned int device, char *bdf, size_t len)
{
	struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
	int n = vfio_lu_find_devs(devs, VFIO_LU_MAX_DEVS);

	for (int i = 0; i < n; i++)
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
TEST_F(luo, sriov_vf_refused)
{
	char pf[32], vf[32], path[PATH_MAX], link[PATH_MAX], needle[128];
	int fd, kmsg;
	ssize_t n;

	ASSERT_NE(NULL, find_dev(0x8086, 0x10c9, pf, sizeof(pf))) TH_LOG("no igb in the test bed");
	ASSERT_EQ(0, vfio_lu_write_file("/sys/module/vfio_pci/parameters/enable_sriov", "Y"));
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/sriov_numvfs", pf);
	ASSERT_EQ(0, vfio_lu_write_file(path, "1"));
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/virtfn0", pf);
	n = readlink(path, link, sizeof(link) - 1);
	ASSERT_LT(0, n);
	link[n] = '\0';
	snprintf(vf, sizeof(vf), "%s", strrchr(link, '/') + 1);
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", vf);
	ASSERT_EQ(0, vfio_lu_write_file(path, "vfio-pci"));
	ASSERT_EQ(0, vfio_lu_write_file(PCI_DEVICES "/../drivers_probe", vf));

	fd = vfio_lu_open_cdev(vf);
	ASSERT_LE(0, fd) TH_LOG("%s: cdev open: %s", vf, strerror(-fd));
	kmsg = vfio_lu_kmsg_open();
	EXPECT_EQ(-ENOENT, vfio_lu_preserve(self->session, fd, TOKEN));
	snprintf(needle, sizeof(needle), "%s: live update: SR-IOV VFs cannot be preserved", vf);
	EXPECT_TRUE(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle)) TH_LOG("no log line '%s'", needle);
	if (kmsg >= 0)
		close(kmsg);
	close(fd);
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/sriov_numvfs", pf);
	EXPECT_EQ(0, vfio_lu_write_file(path, "0"));
	vfio_lu_write_file("/sys/module/vfio_pci/parameters/enable_sriov", "N");
}

TEST_HARNESS_MAIN
