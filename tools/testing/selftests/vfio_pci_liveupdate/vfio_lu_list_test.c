// SPDX-License-Identifier: GPL-2.0
/*
 * A list of preserved devices damaged across a real kexec (its own QEMU
 * run, make test's "test-list": a damaged list takes the hold-off and the
 * reset records from every device of the run), with
 * CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT:
 *
 *   vfio_lu_list_test -s 1   bind the two devices, set the first one's
 *                            virtio status and make its reset at freeze
 *                            fail, preserve both, then damage the list's
 *                            magic (debugfs corrupt_list)
 *   vfio_lu_list_test -s 2   the module said, when it loaded, that the list
 *                            is not usable; the retrieve still gives the
 *                            first device, reset at retrieve since no reset
 *                            outcome is known (its virtio status, not reset
 *                            by the old kernel, reads 0 before the bind,
 *                            and the log says why); nothing is held off:
 *                            the second device's cdev opens before its
 *                            retrieve; the session finishes
 */
#define _GNU_SOURCE
#include "vfio_lu_util.h"
#include "kselftest.h"

#define SESSION_NAME	"vfio-lu-list"
#define STATE_SESSION	"vfio-lu-list-state"
#define TOKEN		0x6c69737400ULL
#define STATUS		0x03
#define CORRUPT_LIST	VFIO_LU_DEBUGFS "/corrupt_list"
#define LIST_IGNORED	"live update: the list of preserved devices is not usable (bad magic"
#define RESET_HERE	"live update: retrieve: the previous kernel recorded no reset outcome; " \
			"resetting the device"

static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS], dev, other;
static int ndevs;

static void find_device(void)
{
	int n = ndevs;

	if (n < 2 || devs[0].vendor != 0x1af4)
		ksft_exit_fail_msg("need a virtio device and another one (%d given)\n", n);
	dev = devs[0];
	other = devs[1];
}

static void stage1(int luo)
{
	int session, iommufd, fd, ret;

	find_device();
	ksft_set_plan(4);
	vfio_lu_state_create(luo, STATE_SESSION);
	session = luo_create_session(luo, SESSION_NAME);
	close(luo);
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (session < 0 || iommufd < 0)
		ksft_exit_fail_msg("session or iommufd: %s\n", strerror(errno));
	fd = vfio_lu_bound_cdev(dev.bdf, iommufd);
	ret = fd < 0 ? fd : vfio_lu_virtio_set_status(fd, STATUS);
	ksft_test_result(!ret && vfio_lu_virtio_status(fd) == STATUS,
			 "stage1_list_vmm_sets_virtio_status %s (%s)\n", dev.bdf, strerror(-ret));
	/* The old kernel does not reset it: only the new kernel's reset can clear the status. */
	if (!ret)
		ret = vfio_lu_arm_reset_fault(dev.bdf, "error");
	if (!ret)
		ret = luo_session_preserve_fd(session, fd, TOKEN);
	ksft_test_result(!ret, "stage1_list_preserve %s (%s)\n", dev.bdf, strerror(-ret));
	fd = vfio_lu_bound_cdev(other.bdf, iommufd);
	ret = fd < 0 ? fd : luo_session_preserve_fd(session, fd, TOKEN + 1);
	ksft_test_result(!ret, "stage1_list_preserve %s (%s)\n", other.bdf, strerror(-ret));
	ret = vfio_lu_write_file(CORRUPT_LIST, "1");
	ksft_test_result(!ret, "stage1_list_magic_damaged (%s)\n", strerror(-ret));
	ret = vfio_lu_hold_fds_for_kexec();
	if (ret < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-ret));
	ksft_finished();
}

static void stage2(int luo, int state)
{
	int session, iommufd, fd, fd2, kmsg, status, ret;
	char log[8192], needle[200];

	find_device();
	ksft_set_plan(6);
	ksft_test_result(!vfio_lu_read_file(VFIO_LU_AT_LOAD_LOG, log, sizeof(log)) &&
			 strstr(log, LIST_IGNORED),
			 "stage2_damaged_list_logged_at_load\n");

	vfio_lu_state_done(state);
	session = luo_retrieve_session(luo, SESSION_NAME);
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (session < 0 || iommufd < 0)
		ksft_exit_fail_msg("session or iommufd: %s\n",
				   strerror(session < 0 ? -session : errno));
	kmsg = vfio_lu_kmsg_open();
	fd = luo_session_retrieve_fd(session, TOKEN);
	status = fd < 0 ? fd : vfio_lu_virtio_status_sysfs(dev.bdf);
	ksft_test_result(fd >= 0 && status == 0,
			 "stage2_retrieved_and_reset %s (fd %d, status %d)\n", dev.bdf, fd, status);
	snprintf(needle, sizeof(needle), "%s: " RESET_HERE, dev.bdf);
	ksft_test_result(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle),
			 "stage2_reset_at_retrieve_logged_with_bdf_and_reason %s\n", dev.bdf);
	if (kmsg >= 0)
		close(kmsg);
	ret = fd < 0 ? fd : __vfio_device_bind_iommufd(fd, iommufd, NULL);
	ksft_test_result(!ret, "stage2_list_bind %s (%s)\n", dev.bdf, strerror(-ret));

	/* Not held off: the list that would name it was ignored. */
	fd2 = vfio_lu_open_cdev(other.bdf);
	ksft_test_result(fd2 >= 0, "stage2_not_held_off_without_a_list %s (%s)\n", other.bdf,
			 strerror(fd2 < 0 ? -fd2 : 0));
	if (fd2 >= 0)
		close(fd2);
	fd2 = luo_session_retrieve_fd(session, TOKEN + 1);
	ret = fd2 < 0 ? fd2 : __vfio_device_bind_iommufd(fd2, iommufd, NULL);
	if (ret)
		ksft_print_msg("%s: retrieve and bind: %s\n", other.bdf, strerror(-ret));
	ret = luo_session_finish(session);
	ksft_test_result(!ret, "stage2_list_session_finishes (%s)\n", strerror(-ret));
	if (fd >= 0)
		close(fd);
	if (fd2 >= 0)
		close(fd2);
	close(session);
	close(iommufd);
	close(luo);
	ksft_finished();
}

int main(int argc, char **argv)
{
	ksft_print_header();
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return luo_test(argc, argv, STATE_SESSION, stage1, stage2);
}
