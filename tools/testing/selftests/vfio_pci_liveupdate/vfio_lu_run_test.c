// SPDX-License-Identifier: GPL-2.0
/*
 * Run mode: in VFIO no-IOMMU mode, a device whose VMM chose
 * VFIO_DEVICE_LIVEUPDATE_RUN goes through the kexec with Bus Master on, on
 * the test's own virtio devices (vfio_lu_keep_devs= of a no-IOMMU run): the
 * first in run mode, behind a PCIe-to-PCI bridge that no driver of the new
 * kernel touches, the second in keep mode as the contrast. The evidence
 * is the Command register and the virtio device status, read through sysfs
 * and through the device file: QEMU's virtio-pci drops DRIVER_OK from the
 * status whenever Bus Master goes off, so a status that still has DRIVER_OK
 * shows that Bus Master never went off, not even for a moment.
 *
 *   vfio_lu_run_test -s 1   bind each device (no-IOMMU iommufd); GET offers
 *                           RUN; SET RUN warns with the BDF; the device is
 *                           brought to DRIVER_OK with Bus Master on; with
 *                           MSI-X on, the preserve of the run device fails
 *                           with EBUSY (interrupts cannot go on through the
 *                           kexec); with MSI-X off it is preserved; a
 *                           kexec that the keep device refuses (INTx on;
 *                           the run device, preserved first, was frozen
 *                           before) is cancelled, and gives the run device
 *                           back running: DRIVER_OK, Bus Master on, its
 *                           file usable
 *   vfio_lu_run_test -s 2   before retrieve: the run device has Bus Master
 *                           on, as has the bridge above it (the kexec's
 *                           shutdown left it on; nothing of the new kernel
 *                           sets it there before a device below is
 *                           enabled), and its status DRIVER_OK; the keep
 *                           device has Bus Master off and lost DRIVER_OK;
 *                           retrieve and bind; GET reports
 *                           RETRIEVED|KEPT|RUNNING for the run device and
 *                           RETRIEVED|KEPT for the other; after the bind the
 *                           run device still has Bus Master on and
 *                           DRIVER_OK; finish, then close the run device:
 *                           the close stops it, Bus Master off and DRIVER_OK
 *                           gone, as after any close (vfio-pci resets it and
 *                           disables it; the state it restores, saved at the
 *                           first open, has Bus Master masked out too, which
 *                           only shortens the time it is on, and no test here
 *                           can see)
 */
#include <libgen.h>
#include <sys/syscall.h>
#include <linux/pci_regs.h>
#include <linux/reboot.h>
#include "vfio_lu_util.h"
#include "kselftest.h"

#define STATE_SESSION	"vfio-lu-run-state"
#define SESSION_NAME	"vfio-lu-run"
#define TOKEN(i)	(0x52554e00 + (i))
/* ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK */
#define STATUS_OK	0x0f
#define DRIVER_OK	0x04

static struct vfio_lu_dev devs[2];
static int ndevs;

static uint32_t mode_of(int i)
{
	return i ? VFIO_DEVICE_LIVEUPDATE_KEEP : VFIO_DEVICE_LIVEUPDATE_RUN;
}

/* The Command register of @bdf, read through its sysfs config file, or -errno. */
static int sysfs_command(const char *bdf)
{
	char path[PATH_MAX];
	uint16_t cmd;
	int fd, n;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/config", bdf);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, &cmd, sizeof(cmd), PCI_COMMAND);
	close(fd);
	return n == sizeof(cmd) ? cmd : -EIO;
}

/* The BDF of the bridge above @bdf, in @out: 0 or -errno. */
static int bridge_of(const char *bdf, char *out, size_t len)
{
	char path[PATH_MAX], real[PATH_MAX];

	snprintf(path, sizeof(path), PCI_DEVICES "/%s", bdf);
	if (!realpath(path, real))
		return -errno;
	snprintf(out, len, "%s", basename(dirname(real)));
	return strchr(out, ':') ? 0 : -ENODEV;
}

/* The Command register through a bound device fd, or -errno. */
static int fd_command(int fd)
{
	uint16_t cmd;
	int ret = vfio_lu_config_read(fd, &cmd, sizeof(cmd), PCI_COMMAND);

	return ret ?: cmd;
}

/* Bus Master on through the device fd, then the status DRIVER_OK: 0 or -errno. */
static int start(int fd)
{
	struct vfio_region_info reg = {
		.argsz = sizeof(reg), .index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	int cmd = fd_command(fd), ret;
	uint16_t v;

	if (cmd < 0)
		return cmd;
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &reg))
		return -errno;
	v = cmd | PCI_COMMAND_MASTER;
	if (pwrite(fd, &v, sizeof(v), reg.offset + PCI_COMMAND) != sizeof(v))
		return -EIO;
	ret = vfio_lu_virtio_set_status(fd, 0);
	ret = ret ?: vfio_lu_virtio_set_status(fd, 0x03);
	ret = ret ?: vfio_lu_virtio_set_status(fd, 0x0b);
	return ret ?: vfio_lu_virtio_set_status(fd, STATUS_OK);
}

static void stage1(int luo)
{
	struct vfio_device_feature_liveupdate lu;
	int session, iommufd, fd, ret, i, kmsg, status, fds[2];
	char needle[256];

	if (ndevs != 2)
		ksft_exit_fail_msg("two devices needed (vfio_lu_keep_devs=), got %d\n", ndevs);
	ksft_set_plan(3 * ndevs + 4);
	kmsg = vfio_lu_kmsg_open();
	vfio_lu_state_create(luo, STATE_SESSION);
	session = vfio_lu_session_and_iommufd(luo, SESSION_NAME, true, &iommufd);
	close(luo);

	for (i = 0; i < ndevs; i++) {
		const char *bdf = devs[i].bdf;

		fd = vfio_lu_bound_cdev(bdf, iommufd);
		if (fd < 0)
			ksft_exit_fail_msg("%s: bind to a no-IOMMU iommufd: %s\n", bdf,
					   strerror(-fd));
		memset(&lu, 0, sizeof(lu));
		ret = vfio_lu_feature(fd, false, &lu);
		ksft_test_result(!ret && (lu.supported & (1 << VFIO_DEVICE_LIVEUPDATE_RUN)),
				 "stage1_run_offered_without_iommu %s (%s, supported %#x)\n", bdf,
				 strerror(-ret), lu.supported);
		ret = vfio_lu_set_mode(fd, mode_of(i));
		ret = ret ?: start(fd);
		ret = ret ?: vfio_lu_virtio_status(fd);
		ksft_test_result(ret == STATUS_OK && (fd_command(fd) & PCI_COMMAND_MASTER),
				 "stage1_mode_set_and_device_started %s (mode %u, status %d)\n",
				 bdf, mode_of(i), ret);
		if (i == 0) {
			snprintf(needle, sizeof(needle), "%s: Adding kernel taint: DMA will go on",
				 bdf);
			ksft_test_result(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle),
					 "stage1_run_mode_taint_logged_with_bdf %s\n", bdf);
			ret = vfio_lu_set_irq(fd, VFIO_PCI_MSIX_IRQ_INDEX, true);
			ret = ret ?: luo_session_preserve_fd(session, fd, TOKEN(i));
			ksft_test_result(ret == -EBUSY,
					 "stage1_run_preserve_refused_with_interrupts_on %s (%s)\n",
					 bdf, strerror(-ret));
			snprintf(needle, sizeof(needle),
				 "%s: live update: cannot preserve: the run mode was chosen and interrupts are enabled",
				 bdf);
			ksft_test_result(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle),
					 "stage1_interrupts_refusal_logged_with_bdf %s\n", bdf);
			ret = vfio_lu_set_irq(fd, VFIO_PCI_MSIX_IRQ_INDEX, false);
			if (ret)
				ksft_exit_fail_msg("%s: MSI-X off: %s\n", bdf, strerror(-ret));
		}
		ret = luo_session_preserve_fd(session, fd, TOKEN(i));
		ksft_test_result(!ret, "stage1_preserve %s (mode %u: %s)\n", bdf, mode_of(i),
				 strerror(-ret));
		fds[i] = fd;
	}

	/*
	 * A cancelled kexec: LUO freezes the files in the order they were
	 * preserved, so the run device is frozen (Bus Master kept on) before
	 * the keep device refuses (interrupts on), and then unfrozen.
	 */
	ret = vfio_lu_set_intx(fds[1], true);
	ret = ret ?: (syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			      LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0);
	status = vfio_lu_set_intx(fds[1], false);
	if (status)
		ksft_exit_fail_msg("%s: INTx off: %s\n", devs[1].bdf, strerror(-status));
	status = vfio_lu_virtio_status(fds[0]);
	ksft_test_result(ret == -EBUSY && status == STATUS_OK &&
			 (fd_command(fds[0]) & PCI_COMMAND_MASTER),
			 "stage1_cancelled_kexec_leaves_run_device_running %s (reboot: %s, status %d)\n",
			 devs[0].bdf, strerror(-ret), status);
	ret = vfio_lu_hold_fds_for_kexec();
	if (ret < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-ret));
	ksft_finished();
}

static void stage2(int luo, int state)
{
	struct vfio_device_feature_liveupdate lu;
	int session, iommufd, fd, ret, i, cmd, status, bridge_ret, run_fd;
	char bridge[32];

	if (ndevs != 2)
		ksft_exit_fail_msg("two devices needed (vfio_lu_keep_devs=), got %d\n", ndevs);
	ksft_set_plan(3 + 3 * ndevs + 2);
	run_fd = -1;
	vfio_lu_state_done(state);
	session = vfio_lu_session_and_iommufd(luo, SESSION_NAME, false, &iommufd);

	/* Before anything of this kernel's VFIO touches the devices */
	cmd = sysfs_command(devs[0].bdf);
	status = vfio_lu_virtio_status_sysfs(devs[0].bdf);
	ksft_test_result(cmd >= 0 && (cmd & PCI_COMMAND_MASTER) && status == STATUS_OK,
			 "stage2_run_device_bus_master_on_and_driver_ok_before_retrieve %s (command %#x, status %#x)\n",
			 devs[0].bdf, cmd, status);
	bridge_ret = bridge_of(devs[0].bdf, bridge, sizeof(bridge));
	cmd = bridge_ret ?: sysfs_command(bridge);
	ksft_test_result(cmd >= 0 && (cmd & PCI_COMMAND_MASTER),
			 "stage2_bridge_above_run_device_bus_master_on %s (command %#x)\n",
			 bridge_ret ? "?" : bridge, cmd);
	cmd = sysfs_command(devs[1].bdf);
	status = vfio_lu_virtio_status_sysfs(devs[1].bdf);
	ksft_test_result(cmd >= 0 && !(cmd & PCI_COMMAND_MASTER) && status >= 0 &&
			 !(status & DRIVER_OK),
			 "stage2_keep_device_stopped_contrast %s (command %#x, status %#x)\n",
			 devs[1].bdf, cmd, status);

	for (i = 0; i < ndevs; i++) {
		const char *bdf = devs[i].bdf;
		uint32_t want = VFIO_DEVICE_LIVEUPDATE_RETRIEVED | VFIO_DEVICE_LIVEUPDATE_KEPT |
				(i ? 0 : VFIO_DEVICE_LIVEUPDATE_RUNNING);

		fd = luo_session_retrieve_fd(session, TOKEN(i));
		ret = fd < 0 ? fd : __vfio_device_bind_iommufd(fd, iommufd, NULL);
		ksft_test_result(!ret, "stage2_retrieve_and_bind %s (%s)\n", bdf, strerror(-ret));
		if (ret) {
			ksft_test_result_skip("stage2_reported %s\n", bdf);
			ksft_test_result_skip("stage2_state_after_bind %s\n", bdf);
			continue;
		}
		memset(&lu, 0, sizeof(lu));
		ret = vfio_lu_feature(fd, false, &lu);
		ksft_test_result(!ret && lu.mode == mode_of(i) && lu.flags == want,
				 "stage2_reported %s (%s, mode %u flags %#x, expected %u %#x)\n",
				 bdf, strerror(-ret), lu.mode, lu.flags, mode_of(i), want);
		cmd = fd_command(fd);
		status = vfio_lu_virtio_status(fd);
		if (i == 0)
			run_fd = fd;
		if (i == 0)
			ksft_test_result(cmd >= 0 && (cmd & PCI_COMMAND_MASTER) &&
					 status == STATUS_OK,
					 "stage2_state_after_bind %s: bus master still on, DRIVER_OK (command %#x, status %#x)\n",
					 bdf, cmd, status);
		else
			ksft_test_result(cmd >= 0 && !(cmd & PCI_COMMAND_MASTER) &&
					 status == (STATUS_OK & ~DRIVER_OK),
					 "stage2_state_after_bind %s: kept, stopped (command %#x, status %#x)\n",
					 bdf, cmd, status);
	}
	ret = luo_session_finish(session);
	ksft_test_result(!ret, "stage2_run_finish (%s)\n", strerror(-ret));
	/* The VMM is done with the device: its DMA stops, and stays stopped */
	if (run_fd >= 0)
		close(run_fd);
	cmd = sysfs_command(devs[0].bdf);
	status = vfio_lu_virtio_status_sysfs(devs[0].bdf);
	ksft_test_result(run_fd >= 0 && cmd >= 0 && !(cmd & PCI_COMMAND_MASTER) && status >= 0 &&
			 !(status & DRIVER_OK),
			 "stage2_run_device_stopped_by_close %s (command %#x, status %#x)\n",
			 devs[0].bdf, cmd, status);
	ksft_finished();
}

int main(int argc, char **argv)
{
	ksft_print_header();
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, 2);
	return luo_test(argc, argv, STATE_SESSION, stage1, stage2);
}
