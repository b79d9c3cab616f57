// SPDX-License-Identifier: GPL-2.0
/*
 * A device is never handed out in a state other than the one claimed: the
 * outcome of every reset at freeze reaches the new kernel, which resets a
 * device itself when the old kernel's reset was not done. On the test's own
 * virtio devices (vfio_lu_reset_devs=, four of them), with
 * CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT. The evidence is the virtio device
 * status register, which the VMM sets before the kexec and a reset clears,
 * read from the device.
 *
 *   vfio_lu_reset_test -s 1   bind the three devices, set their virtio
 *                             status, preserve them. Serial resets: a failed
 *                             reset and a locked device each refuse the
 *                             kexec (EIO, EBUSY), and the device keeps its
 *                             status. Parallel resets: arm a failing reset
 *                             for the first and third devices and hold the
 *                             second's locks past the give-up; the kexec
 *                             goes on (a reset runs after the freeze). The
 *                             two functions of one device refuse the keep
 *                             mode (EOPNOTSUPP). The fourth device goes into
 *                             a session of its own,
 *                             whose VMM will not come back; with
 *                             bind_preserved=1, its entry in the list of
 *                             preserved devices gets another identity
 *   vfio_lu_reset_test -s 2   parallel: the first two devices are reset at
 *                             retrieve (status 0 before anyone binds them),
 *                             the third, whose reset fails again, is refused
 *                             with EIO and a log line naming it; serial: all
 *                             three were reset at freeze (status 0). Either
 *                             way the session then finishes. The fourth
 *                             device stays held off (EBUSY) until the
 *                             administrator retrieves its session by name
 *                             and closes it: then its cdev opens. With
 *                             bind_preserved=1 the module did not bind it
 *                             when it loaded (identity mismatch, logged)
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <linux/reboot.h>

#include "vfio_lu_util.h"
#include "kselftest.h"

#define SESSION_NAME	"vfio-lu-resets"
#define STATE_SESSION	"vfio-lu-resets-state"
#define ABANDONED	"vfio-lu-abandoned"
#define TOKEN(i)	(0x7273740000ULL + (i))
#define NDEVS		3
/* The device of the session whose VMM does not come back */
#define LOST		VFIO_LU_RESET_LOST
/* The two functions of one device, in one VFIO device set */
#define FN0		VFIO_LU_RESET_FN0
#define NFN		2
/* ACKNOWLEDGE | DRIVER: what a VMM's driver writes first */
#define STATUS		0x03

static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

static void find_devices(void)
{
	if (ndevs < VFIO_LU_RESET_NDEVS)
		ksft_exit_fail_msg("need %d devices (vfio_lu_reset_devs=), %d given\n",
				   VFIO_LU_RESET_NDEVS, ndevs);
}

static int kexec(void)
{
	return syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		       LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
}

/*
 * Serial resets: a freeze whose reset fails, or that finds the device
 * locked, refuses the kexec with the errno of the reset; the device was not
 * reset and its status stays as the VMM set it.
 */
static void serial_refusal(int fd, const char *bdf, const char *fault, int want_err,
			   const char *log)
{
	int kmsg = vfio_lu_kmsg_open(), ret, status;
	char needle[160];
	bool logged;

	ret = vfio_lu_arm_reset_fault(bdf, fault);
	if (ret)
		ksft_exit_fail_msg("arm %s of %s: %s\n", fault, bdf, strerror(-ret));
	ret = kexec();
	ksft_test_result(ret == -want_err, "stage1_serial_reset_%s_refuses_kexec %s (%s)\n",
			 fault, bdf, strerror(-ret));
	snprintf(needle, sizeof(needle), "%s: %s", bdf, log);
	logged = kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle);
	ksft_test_result(logged, "stage1_serial_reset_%s_logged_with_bdf %s\n", fault, bdf);
	status = vfio_lu_virtio_status(fd);
	ksft_test_result(status == STATUS,
			 "stage1_serial_reset_%s_device_not_reset %s (status %d)\n", fault, bdf,
			 status);
	if (kmsg >= 0)
		close(kmsg);
}

static void stage1(int luo)
{
	int session, lost, iommufd, fd, ret, i;
	bool serial = vfio_lu_param_on("serial_reset");
	int fds[NDEVS];

	find_devices();
	if (access(VFIO_LU_FAIL_RESET, W_OK))
		ksft_exit_fail_msg("%s: %s (CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT off?)\n",
				   VFIO_LU_FAIL_RESET, strerror(errno));
	ksft_set_plan(2 + 2 * NFN + 2 * NDEVS + (serial ? 6 : 1) +
		      vfio_lu_param_on("bind_preserved"));

	vfio_lu_state_create(luo, STATE_SESSION);
	session = luo_create_session(luo, SESSION_NAME);
	ksft_test_result(session >= 0, "stage1_reset_create_session\n");
	if (session < 0)
		ksft_exit_fail_msg("create session: %s\n", strerror(-session));
	lost = luo_create_session(luo, ABANDONED);
	close(luo);
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		ksft_exit_fail_msg("open /dev/iommu: %s\n", strerror(errno));
	fd = lost < 0 ? lost : vfio_lu_bound_cdev(devs[LOST].bdf, iommufd);
	ret = fd < 0 ? fd : luo_session_preserve_fd(lost, fd, TOKEN(LOST));
	ksft_test_result(!ret, "stage1_preserve_in_a_session_whose_vmm_will_not_return %s (%s)\n",
			 devs[LOST].bdf, strerror(-ret));
	if (vfio_lu_param_on("bind_preserved")) {
		/* The next kernel's bind_preserved must leave this device alone. */
		ret = vfio_lu_write_file(VFIO_LU_LIST_IDENTITY, devs[LOST].bdf);
		ksft_test_result(!ret, "stage1_list_identity_corrupted %s (%s)\n", devs[LOST].bdf,
				 strerror(-ret));
	}

	for (i = 0; i < NDEVS; i++) {
		fd = vfio_lu_bound_cdev(devs[i].bdf, iommufd);
		ret = fd < 0 ? fd : vfio_lu_virtio_set_status(fd, STATUS);
		ksft_test_result(!ret && vfio_lu_virtio_status(fd) == STATUS,
				 "stage1_vmm_sets_virtio_status %s (%s)\n", devs[i].bdf,
				 strerror(-ret));
		ret = fd < 0 ? fd : luo_session_preserve_fd(session, fd, TOKEN(i));
		ksft_test_result(!ret, "stage1_reset_preserve %s (%s)\n", devs[i].bdf,
				 strerror(-ret));
		fds[i] = fd;
	}
	if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0)
		ksft_exit_fail_msg("devices not preserved\n");
	/*
	 * Both functions of one device: their resets are serialized (see
	 * faults.rst). The first one's blob is written in the upstream C
	 * proposal's layout (six bytes, zeros after them).
	 */
	for (i = FN0; i < FN0 + NFN; i++) {
		struct vfio_device_feature_liveupdate lu = {};

		fd = vfio_lu_bound_cdev(devs[i].bdf, iommufd);
		/* A reset of the other function would reset it: its state cannot be kept. */
		ret = fd < 0 ? fd : vfio_lu_set_mode(fd, VFIO_DEVICE_LIVEUPDATE_KEEP);
		if (!ret) {
			/* Taken, wrongly: back to the reset mode the rest of the test wants */
			vfio_lu_set_mode(fd, VFIO_DEVICE_LIVEUPDATE_RESET);
			ret = -EEXIST;
		} else if (ret == -EOPNOTSUPP) {
			ret = vfio_lu_feature(fd, false, &lu);
		}
		ksft_test_result(!ret && lu.supported == 1 << VFIO_DEVICE_LIVEUPDATE_RESET,
				 "stage1_keep_refused_for_a_shared_device_set %s (%s, supported %#x)\n",
				 devs[i].bdf, strerror(-ret), lu.supported);
		ret = fd < 0 ? fd : vfio_lu_virtio_set_status(fd, STATUS);
		if (!ret && i == FN0)
			ret = vfio_lu_write_file(VFIO_LU_CORRUPT, "upstream");
		if (!ret)
			ret = luo_session_preserve_fd(session, fd, TOKEN(i));
		ksft_test_result(!ret, "stage1_preserve_function_of_a_shared_device_set %s (%s)\n",
				 devs[i].bdf, strerror(-ret));
	}

	if (serial) {
		serial_refusal(fds[0], devs[0].bdf, "error", EIO,
			       "live update: reset failed after");
		serial_refusal(fds[1], devs[1].bdf, "locked", EBUSY,
			       "live update: cannot freeze: the device or its upstream bridge is locked by someone else");
	} else {
		/* Taken by the resets that the kexec's freezes queue. */
		ret = vfio_lu_arm_reset_fault(devs[0].bdf, "error");
		if (!ret)
			ret = vfio_lu_arm_reset_fault(devs[1].bdf, "locked");
		if (!ret)
			ret = vfio_lu_arm_reset_fault(devs[2].bdf, "error");
		ksft_test_result(!ret, "stage1_parallel_reset_faults_armed (%s)\n", strerror(-ret));
	}

	ret = vfio_lu_hold_fds_for_kexec();
	if (ret < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-ret));
	ksft_finished();
}

/* Retrieve device @i; its status read from the device before anyone binds it. */
static int retrieve_and_read(int session, int i, int *status)
{
	int fd = luo_session_retrieve_fd(session, TOKEN(i));

	*status = fd < 0 ? fd : vfio_lu_virtio_status_sysfs(devs[i].bdf);
	return fd;
}

/*
 * bind_preserved=1: the list of preserved devices gave the fourth device
 * another identity, so the module did not bind it or set its override when it
 * loaded (init recorded that before binding anything), and said why.
 */
static void identity_mismatch_not_bound(void)
{
	char line[256], bdf[32], drv[64], ovr[64], want[160], log[8192];
	bool seen = false, untouched = false;
	FILE *f = fopen(VFIO_LU_AT_LOAD, "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%31s %63s %63s", bdf, drv, ovr) == 3 &&
		    !strcmp(bdf, devs[LOST].bdf)) {
			seen = true;
			untouched = strcmp(drv, "vfio-pci") && !strcmp(ovr, "(null)");
		}
	if (f)
		fclose(f);
	ksft_test_result(seen && untouched,
			 "stage2_bind_preserved_leaves_a_device_of_another_identity %s\n",
			 devs[LOST].bdf);
	/* The module logged it when it loaded, before this program ran: init kept the line. */
	snprintf(want, sizeof(want),
		 "%s: live update: bind_preserved: not bound: identity mismatch", devs[LOST].bdf);
	ksft_test_result(!vfio_lu_read_file(VFIO_LU_AT_LOAD_LOG, log, sizeof(log)) &&
			 strstr(log, want),
			 "stage2_identity_mismatch_logged_with_bdf %s\n", devs[LOST].bdf);
}

/*
 * The VMM of the other session never comes back: its device stays held off
 * until the administrator retrieves the session by name and closes it,
 * which finishes it (LUO finishes a session on release, ready or not).
 */
static void abandoned_session_released(void)
{
	int luo, session, fd;

	if (vfio_lu_param_on("bind_preserved"))
		identity_mismatch_not_bound();

	fd = vfio_lu_open_cdev(devs[LOST].bdf);
	ksft_test_result(fd == -EBUSY, "stage2_abandoned_device_held_off %s (%s)\n",
			 devs[LOST].bdf, strerror(fd < 0 ? -fd : 0));
	if (fd >= 0)
		close(fd);
	luo = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
	session = luo < 0 ? -errno : luo_retrieve_session(luo, ABANDONED);
	ksft_test_result(session >= 0,
			 "stage2_administrator_retrieves_the_abandoned_session (%s)\n",
			 strerror(session < 0 ? -session : 0));
	if (session >= 0)
		close(session);
	if (luo >= 0)
		close(luo);
	fd = vfio_lu_open_cdev(devs[LOST].bdf);
	ksft_test_result(fd >= 0, "stage2_closing_it_releases_the_device %s (%s)\n",
			 devs[LOST].bdf, strerror(fd < 0 ? -fd : 0));
	if (fd >= 0)
		close(fd);
}

static void stage2(int luo, int state)
{
	bool serial = vfio_lu_param_on("serial_reset");
	int session, iommufd, ret, i, status;
	int fds[NDEVS] = { -1, -1, -1 }, fns[NFN] = { -1, -1 };
	char needle[200];
	int kmsg;

	find_devices();
	ksft_set_plan(6 + NFN + 2 * NDEVS + 2 * vfio_lu_param_on("bind_preserved"));
	vfio_lu_state_done(state);
	session = vfio_lu_session_and_iommufd(luo, SESSION_NAME, false, &iommufd);

	if (serial) {
		/* Every reset was done, in the freezes, before the kexec. */
		for (i = 0; i < NDEVS; i++) {
			fds[i] = retrieve_and_read(session, i, &status);
			ksft_test_result(fds[i] >= 0, "stage2_reset_retrieve %s (%s)\n",
					 devs[i].bdf, strerror(fds[i] < 0 ? -fds[i] : 0));
			ksft_test_result(status == 0,
					 "stage2_serial_reset_at_freeze_cleared_status %s (status %d)\n",
					 devs[i].bdf, status);
		}
	} else {
		/* The new kernel's reset of the third device fails too. */
		ret = vfio_lu_arm_reset_fault(devs[2].bdf, "error");
		if (ret)
			ksft_exit_fail_msg("arm the third device's fault: %s\n", strerror(-ret));
		for (i = 0; i < 2; i++) {
			kmsg = vfio_lu_kmsg_open();
			fds[i] = retrieve_and_read(session, i, &status);
			ksft_test_result(fds[i] >= 0 && status == 0,
					 "stage2_failed_reset_redone_at_retrieve %s (fd %d, status %d)\n",
					 devs[i].bdf, fds[i], status);
			snprintf(needle, sizeof(needle),
				 "%s: live update: retrieve: the previous kernel's reset failed; resetting the device",
				 devs[i].bdf);
			ksft_test_result(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle),
					 "stage2_reset_at_retrieve_logged_with_bdf_and_reason %s\n",
					 devs[i].bdf);
			if (kmsg >= 0)
				close(kmsg);
		}
		kmsg = vfio_lu_kmsg_open();
		ret = luo_session_retrieve_fd(session, TOKEN(2));
		ksft_test_result(ret == -EIO,
				 "stage2_retrieve_refused_when_reset_fails_again %s (%s)\n",
				 devs[2].bdf, strerror(ret < 0 ? -ret : 0));
		snprintf(needle, sizeof(needle),
			 "%s: live update: retrieve: refused (EIO): the previous kernel's reset failed, and the reset at retrieve failed",
			 devs[2].bdf);
		ksft_test_result(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle),
				 "stage2_refusal_logged_with_bdf_and_reason %s\n", devs[2].bdf);
		if (kmsg >= 0)
			close(kmsg);
		if (ret >= 0)
			fds[2] = ret;
	}

	/*
	 * Both functions of the shared device set were reset at freeze, one
	 * after the other; the first, preserved in the upstream layout, is
	 * retrieved by its address alone.
	 */
	kmsg = vfio_lu_kmsg_open();
	for (i = FN0; i < FN0 + NFN; i++) {
		fns[i - FN0] = retrieve_and_read(session, i, &status);
		ksft_test_result(fns[i - FN0] >= 0 && status == 0,
				 "stage2_function_of_a_shared_device_set_reset %s (fd %d, status %d)\n",
				 devs[i].bdf, fns[i - FN0], status);
	}
	snprintf(needle, sizeof(needle),
		 "%s: live update: retrieve: preserved in the upstream layout, identity not checked",
		 devs[FN0].bdf);
	ksft_test_result(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle),
			 "stage2_upstream_layout_blob_retrieved %s\n", devs[FN0].bdf);
	if (kmsg >= 0)
		close(kmsg);
	for (i = 0; i < NDEVS; i++)
		if (fds[i] >= 0 && __vfio_device_bind_iommufd(fds[i], iommufd, NULL))
			ksft_print_msg("%s: bind: %s\n", devs[i].bdf, strerror(errno));
	for (i = 0; i < NFN; i++)
		if (fns[i] >= 0 && __vfio_device_bind_iommufd(fns[i], iommufd, NULL))
			ksft_print_msg("%s: bind: %s\n", devs[FN0 + i].bdf, strerror(errno));
	ret = luo_session_finish(session);
	ksft_test_result(!ret, "stage2_reset_session_finishes (%s)\n", strerror(-ret));
	for (i = 0; i < NDEVS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (i = 0; i < NFN; i++)
		if (fns[i] >= 0)
			close(fns[i]);
	close(session);
	close(iommufd);
	close(luo);
	/* Finished, every device opens again. */
	ksft_test_result(!vfio_lu_cdevs_open(devs, NDEVS),
			 "stage2_reset_devices_open_after_finish\n");
	abandoned_session_released();
	ksft_finished();
}

int main(int argc, char **argv)
{
	ksft_print_header();
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return luo_test(argc, argv, STATE_SESSION, stage1, stage2);
}
