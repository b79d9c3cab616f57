// SPDX-License-Identifier: GPL-2.0
/*
 * Keep mode: a device whose VMM chose VFIO_DEVICE_LIVEUPDATE_KEEP goes
 * through the kexec with its state, on the test's own virtio devices
 * (vfio_lu_keep_devs=). The evidence is the device's virtio common
 * configuration, which the VMM programs before the kexec and a reset clears,
 * read from the device.
 *
 *   vfio_lu_keep_test -s 1   (idle D3 allowed: the idle device is in D3hot)
 *                            bind each device; VFIO_DEVICE_FEATURE_LIVEUPDATE
 *                            offers KEEP, refuses an unknown mode (EINVAL)
 *                            and RUN (EOPNOTSUPP: behind an IOMMU), takes
 *                            KEEP; program the device as a driver
 *                            would (status, features, queue 0's size and
 *                            addresses, MSI-X vectors) and set bus
 *                            mastering; preserve it, after which the mode
 *                            cannot change (EBUSY); record what the device
 *                            reads back in a preserved memfd
 *   vfio_lu_keep_test -s 2   the module made vfio-pci the only driver of the
 *                            kept devices when it loaded (driver_override,
 *                            before init bound anything); before retrieve
 *                            the device is in D0, its status is as stage 1
 *                            left it, and its cdev does not open; retrieve
 *                            and bind; the feature reports the
 *                            device as retrieved and kept; the common
 *                            configuration reads as stage 1 recorded it; bus
 *                            mastering is off until the VMM sets it. The
 *                            last of two or more devices gets an FLR
 *                            through its sysfs config file before its
 *                            retrieve: the handler finds its state lost,
 *                            logs it with the BDF, resets it, and the
 *                            feature reports it as not kept
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <linux/pci_regs.h>

#include "vfio_lu_util.h"
#include "kselftest.h"

#define SESSION_NAME	"vfio-lu-keep"
#define STATE_SESSION	"vfio-lu-keep-state"
#define TOKEN(i)	(0x6b65657000ULL + (i))
#define RECORD_TOKEN	0x6b72656eULL
#define LOST_LOG	"live update: retrieve: the state of the kept device was lost"

/* virtio_pci_common_cfg offsets */
#define DRIVER_FEATURE_SELECT	0x08
#define DRIVER_FEATURE		0x0c
#define CONFIG_MSIX_VECTOR	0x10
#define DEVICE_STATUS		0x14
#define QUEUE_SELECT		0x16
#define QUEUE_SIZE		0x18
#define QUEUE_MSIX_VECTOR	0x1a
#define QUEUE_ENABLE		0x1c
#define QUEUE_DESC		0x20
#define QUEUE_DRIVER		0x28
#define QUEUE_DEVICE		0x30
/* ACKNOWLEDGE | DRIVER | FEATURES_OK: a driver before DRIVER_OK */
#define STATUS			0x0b
#define FEATURES_OK		0x08
/* VIRTIO_F_VERSION_1, bit 32: bit 0 of feature word 1 */
#define VERSION_1_WORD1		0x1

static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

/* What the device reads back after the VMM programmed it. */
struct common {
	uint32_t features1;		/* driver features, word 1 */
	uint16_t config_vector, queue_vector, queue_size, queue_enable;
	uint64_t desc, driver, device;
	uint8_t status;
};

/* What stage 1 recorded, in a preserved memfd. */
struct record {
	int ndevs;
	struct common dev[VFIO_LU_MAX_DEVS];
};

static int rw(int fd, off_t off, void *buf, size_t len, bool write)
{
	ssize_t n = write ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);

	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

static int rd(int fd, off_t off, void *buf, size_t len)
{
	return rw(fd, off, buf, len, false);
}

#define W(fd, base, reg, val) ({ __typeof__(val) __v = (val); \
	rw(fd, (base) + (reg), &__v, sizeof(__v), true); })

/* Program queue 0 and the status as a driver would; 0 or -errno. */
static int program(int fd)
{
	uint16_t max = 0;
	off_t c;
	int ret;

	ret = vfio_lu_virtio_common_off(fd, &c);
	ret = ret ?: W(fd, c, DEVICE_STATUS, (uint8_t)0);
	ret = ret ?: W(fd, c, DEVICE_STATUS, (uint8_t)0x03);
	ret = ret ?: W(fd, c, DRIVER_FEATURE_SELECT, (uint32_t)1);
	ret = ret ?: W(fd, c, DRIVER_FEATURE, (uint32_t)VERSION_1_WORD1);
	ret = ret ?: W(fd, c, DRIVER_FEATURE_SELECT, (uint32_t)0);
	ret = ret ?: W(fd, c, DRIVER_FEATURE, (uint32_t)0);
	ret = ret ?: W(fd, c, DEVICE_STATUS, (uint8_t)STATUS);
	ret = ret ?: W(fd, c, CONFIG_MSIX_VECTOR, (uint16_t)0);
	ret = ret ?: W(fd, c, QUEUE_SELECT, (uint16_t)0);
	ret = ret ?: rd(fd, c + QUEUE_SIZE, &max, sizeof(max));
	ret = ret ?: W(fd, c, QUEUE_SIZE, (uint16_t)(max < 16 ? max : 16));
	ret = ret ?: W(fd, c, QUEUE_MSIX_VECTOR, (uint16_t)1);
	ret = ret ?: W(fd, c, QUEUE_DESC, (uint64_t)0x40000000);
	ret = ret ?: W(fd, c, QUEUE_DRIVER, (uint64_t)0x40001000);
	ret = ret ?: W(fd, c, QUEUE_DEVICE, (uint64_t)0x40002000);
	ret = ret ?: W(fd, c, QUEUE_ENABLE, (uint16_t)1);
	return ret;
}

/* Read back what program() set; 0 or -errno. */
static int read_common(int fd, struct common *s)
{
	off_t c;
	int ret;

	memset(s, 0, sizeof(*s));
	ret = vfio_lu_virtio_common_off(fd, &c);
	ret = ret ?: W(fd, c, DRIVER_FEATURE_SELECT, (uint32_t)1);
	ret = ret ?: rd(fd, c + DRIVER_FEATURE, &s->features1, sizeof(s->features1));
	ret = ret ?: rd(fd, c + CONFIG_MSIX_VECTOR, &s->config_vector, sizeof(s->config_vector));
	ret = ret ?: rd(fd, c + DEVICE_STATUS, &s->status, sizeof(s->status));
	ret = ret ?: W(fd, c, QUEUE_SELECT, (uint16_t)0);
	ret = ret ?: rd(fd, c + QUEUE_SIZE, &s->queue_size, sizeof(s->queue_size));
	ret = ret ?: rd(fd, c + QUEUE_MSIX_VECTOR, &s->queue_vector, sizeof(s->queue_vector));
	ret = ret ?: rd(fd, c + QUEUE_ENABLE, &s->queue_enable, sizeof(s->queue_enable));
	ret = ret ?: rd(fd, c + QUEUE_DESC, &s->desc, sizeof(s->desc));
	ret = ret ?: rd(fd, c + QUEUE_DRIVER, &s->driver, sizeof(s->driver));
	ret = ret ?: rd(fd, c + QUEUE_DEVICE, &s->device, sizeof(s->device));
	return ret;
}

static void print_common(const char *bdf, const char *what, const struct common *s)
{
	ksft_print_msg("%s: %s: status %#x features[1] %#x vectors %#x/%#x\n", bdf, what,
		       s->status, s->features1, s->config_vector, s->queue_vector);
	ksft_print_msg("%s: %s: queue 0 size %u enable %u desc %#llx driver %#llx device %#llx\n",
		       bdf, what, s->queue_size, s->queue_enable, (unsigned long long)s->desc,
		       (unsigned long long)s->driver, (unsigned long long)s->device);
}

static int command(int fd, uint16_t *cmd)
{
	return vfio_lu_config_read(fd, cmd, sizeof(*cmd), PCI_COMMAND);
}

static int set_bus_master(int fd)
{
	struct vfio_region_info reg = {
		.argsz = sizeof(reg), .index = VFIO_PCI_CONFIG_REGION_INDEX,
	};
	uint16_t cmd;
	int ret = command(fd, &cmd);

	if (ret)
		return ret;
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &reg))
		return -errno;
	cmd |= PCI_COMMAND_MASTER;
	return rw(fd, reg.offset + PCI_COMMAND, &cmd, sizeof(cmd), true);
}

/* Whether vfio-pci puts idle devices in D3hot (vfio_pci.disable_idle_d3 off). */
static bool idle_d3(void)
{
	char val[8] = "";

	return !vfio_lu_read_file("/sys/module/vfio_pci/parameters/disable_idle_d3", val,
				  sizeof(val)) && val[0] == 'N';
}

/* The power state of @bdf as the PCI core has it, in @pm ("D0", "D3hot"...). */
static int read_power_state(const char *bdf, char *pm, size_t len)
{
	char path[PATH_MAX];
	int ret;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/power_state", bdf);
	ret = vfio_lu_read_file(path, pm, len);
	if (!ret)
		strtok(pm, "\n");
	return ret;
}

static void stage1(int luo)
{
	struct vfio_device_feature_liveupdate lu;
	int session, iommufd, mfd, fd, ret, i;
	struct record *rec;
	uint16_t cmd = 0;

	if (ndevs <= 0)
		ksft_exit_fail_msg("no devices given (vfio_lu_keep_devs=)\n");
	ksft_set_plan(1 + (7 + idle_d3()) * ndevs);
	vfio_lu_state_create(luo, STATE_SESSION);
	session = luo_create_session(luo, SESSION_NAME);
	if (session < 0)
		ksft_exit_fail_msg("create session: %s\n", strerror(-session));
	close(luo);
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	mfd = memfd_create("vfio-lu-keep-record", MFD_CLOEXEC);
	if (iommufd < 0 || mfd < 0 || ftruncate(mfd, sizeof(*rec)))
		ksft_exit_fail_msg("iommufd or memfd: %s\n", strerror(errno));
	rec = mmap(NULL, sizeof(*rec), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (rec == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	rec->ndevs = ndevs;

	for (i = 0; i < ndevs; i++) {
		const char *bdf = devs[i].bdf;
		char pm[16] = "";

		/*
		 * Idle, bound to vfio-pci and not held off for a live update, a
		 * device is suspended: what stage 2 must not see of a kept one.
		 */
		if (idle_d3()) {
			ret = read_power_state(bdf, pm, sizeof(pm));
			ksft_test_result(!ret && !strcmp(pm, "D3hot"),
					 "stage1_idle_device_suspended_by_vfio_pci %s (%s)\n", bdf,
					 ret ? strerror(-ret) : pm);
		}
		fd = vfio_lu_bound_cdev(bdf, iommufd);
		if (fd < 0)
			ksft_exit_fail_msg("%s: bind: %s\n", bdf, strerror(-fd));
		memset(&lu, 0, sizeof(lu));
		ret = vfio_lu_feature(fd, false, &lu);
		ksft_test_result(!ret && lu.mode == VFIO_DEVICE_LIVEUPDATE_RESET && !lu.flags &&
				 lu.supported == (1 << VFIO_DEVICE_LIVEUPDATE_RESET |
						  1 << VFIO_DEVICE_LIVEUPDATE_KEEP),
				 "stage1_keep_offered %s (%s, mode %u supported %#x flags %#x)\n",
				 bdf, strerror(-ret), lu.mode, lu.supported, lu.flags);
		ret = vfio_lu_set_mode(fd, 7);
		ksft_test_result(ret == -EINVAL, "stage1_unknown_mode_refused %s (%s)\n", bdf,
				 strerror(-ret));
		/* Behind the IOMMU: DMA cannot go on through the kexec */
		ret = vfio_lu_set_mode(fd, VFIO_DEVICE_LIVEUPDATE_RUN);
		ksft_test_result(ret == -EOPNOTSUPP, "stage1_run_refused_behind_an_iommu %s (%s)\n",
				 bdf, strerror(-ret));
		ret = vfio_lu_set_mode(fd, VFIO_DEVICE_LIVEUPDATE_KEEP);
		memset(&lu, 0, sizeof(lu));
		if (!ret)
			ret = vfio_lu_feature(fd, false, &lu);
		ksft_test_result(!ret && lu.mode == VFIO_DEVICE_LIVEUPDATE_KEEP,
				 "stage1_keep_chosen %s (%s, mode %u)\n", bdf, strerror(-ret),
				 lu.mode);
		ret = program(fd);
		ret = ret ?: set_bus_master(fd);
		ret = ret ?: read_common(fd, &rec->dev[i]);
		ret = ret ?: command(fd, &cmd);
		print_common(bdf, "programmed", &rec->dev[i]);
		ksft_test_result(!ret && rec->dev[i].status == STATUS &&
				 rec->dev[i].features1 == VERSION_1_WORD1 &&
				 rec->dev[i].queue_enable == 1 && rec->dev[i].desc == 0x40000000 &&
				 (cmd & PCI_COMMAND_MASTER),
				 "stage1_vmm_programs_device %s (%s)\n", bdf, strerror(-ret));
		ret = luo_session_preserve_fd(session, fd, TOKEN(i));
		ksft_test_result(!ret, "stage1_keep_preserve %s (%s)\n", bdf, strerror(-ret));
		ret = vfio_lu_set_mode(fd, VFIO_DEVICE_LIVEUPDATE_RESET);
		ksft_test_result(ret == -EBUSY, "stage1_mode_locked_while_preserved %s (%s)\n",
				 bdf, strerror(-ret));
	}
	munmap(rec, sizeof(*rec));
	ret = luo_session_preserve_fd(session, mfd, RECORD_TOKEN);
	ksft_test_result(!ret, "stage1_keep_preserve_record (%s)\n", strerror(-ret));

	ret = vfio_lu_hold_fds_for_kexec();
	if (ret < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-ret));
	ksft_finished();
}

/* The driver and driver_override of @bdf when the module loaded, as init recorded them. */
static bool vfio_pci_only_at_load(const char *bdf)
{
	char line[256], b[32], drv[64], ovr[64];
	bool ok = false;
	FILE *f = fopen(VFIO_LU_AT_LOAD, "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%31s %63s %63s", b, drv, ovr) == 3 && !strcmp(b, bdf)) {
			ok = !strcmp(drv, "vfio-pci") && !strcmp(ovr, "vfio-pci");
			if (!ok)
				ksft_print_msg("%s: at module load: driver %s override %s\n", bdf,
					       drv, ovr);
		}
	if (f)
		fclose(f);
	return ok;
}

/*
 * A Function Level Reset of @bdf behind everyone's back, through its config
 * file, without the PCI core's save and restore of the configuration: what
 * a reset the handler does not see leaves (decoding off, BARs cleared).
 * 0 or -errno.
 */
static int flr_behind_the_back(const char *bdf)
{
	char path[PATH_MAX];
	uint8_t cfg[256];
	uint16_t ctl;
	int fd, pos, hops = 0, ret = -ENOENT;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/config", bdf);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, cfg, sizeof(cfg), 0) != sizeof(cfg)) {
		close(fd);
		return -EIO;
	}
	/* The PCI Express capability: Device Control at +8, Initiate FLR bit 15 */
	for (pos = cfg[PCI_CAPABILITY_LIST] & ~3; pos >= 0x40 && hops++ < 48;
	     pos = cfg[pos + 1] & ~3) {
		if (cfg[pos] != PCI_CAP_ID_EXP)
			continue;
		memcpy(&ctl, cfg + pos + PCI_EXP_DEVCTL, sizeof(ctl));
		ctl |= PCI_EXP_DEVCTL_BCR_FLR;
		ret = pwrite(fd, &ctl, sizeof(ctl), pos + PCI_EXP_DEVCTL) == sizeof(ctl) ? 0 : -EIO;
		break;
	}
	close(fd);
	if (!ret)
		usleep(200 * 1000);	/* 100 ms at least, as the PCI core waits */
	return ret;
}

/*
 * The last device, reset behind the handler's back after the kexec: the
 * retrieve finds its state lost, resets it as in the reset mode, and says
 * so, in the log and in VFIO_DEVICE_FEATURE_LIVEUPDATE.
 */
static void lost_state_reported(int session, int iommufd, int i)
{
	struct vfio_device_feature_liveupdate lu = {};
	const char *bdf = devs[i].bdf;
	char needle[160];
	int fd, ret, kmsg, status;

	ret = flr_behind_the_back(bdf);
	ksft_test_result(!ret, "stage2_kept_device_reset_behind_the_handlers_back %s (%s)\n", bdf,
			 strerror(-ret));
	kmsg = vfio_lu_kmsg_open();
	fd = luo_session_retrieve_fd(session, TOKEN(i));
	ret = fd < 0 ? fd : __vfio_device_bind_iommufd(fd, iommufd, NULL);
	ksft_test_result(!ret, "stage2_reset_device_retrieve_and_bind %s (%s)\n", bdf,
			 strerror(-ret));
	snprintf(needle, sizeof(needle), "%s: %s", bdf, LOST_LOG);
	ksft_test_result(kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle),
			 "stage2_lost_state_logged_with_bdf_and_reason %s\n", bdf);
	if (kmsg >= 0)
		close(kmsg);
	if (!ret)
		ret = vfio_lu_feature(fd, false, &lu);
	ksft_test_result(!ret && lu.mode == VFIO_DEVICE_LIVEUPDATE_KEEP &&
			 lu.flags == VFIO_DEVICE_LIVEUPDATE_RETRIEVED,
			 "stage2_reset_device_reported_not_kept %s (%s, mode %u flags %#x)\n", bdf,
			 strerror(-ret), lu.mode, lu.flags);
	status = ret ? ret : vfio_lu_virtio_status(fd);
	ksft_test_result(status == 0, "stage2_reset_device_reads_reset %s (status %d)\n", bdf,
			 status);
}

static bool same(const char *bdf, const struct common *want, const struct common *have)
{
	bool ok = want->features1 == have->features1 && want->status == have->status &&
		  want->config_vector == have->config_vector &&
		  want->queue_vector == have->queue_vector &&
		  want->queue_size == have->queue_size &&
		  want->queue_enable == have->queue_enable && want->desc == have->desc &&
		  want->driver == have->driver && want->device == have->device;

	if (!ok) {
		print_common(bdf, "stage 1 recorded", want);
		print_common(bdf, "stage 2 read", have);
	}
	return ok;
}

static void stage2(int luo, int state)
{
	struct vfio_device_feature_liveupdate lu;
	int session, iommufd, mfd, fd, ret, i, status, lost;
	char pm[16];
	struct common now;
	struct record *rec;
	uint16_t cmd;

	if (ndevs <= 0)
		ksft_exit_fail_msg("no devices given (vfio_lu_keep_devs=)\n");
	/* The last of two or more devices is reset behind the handler's back: 8 results. */
	lost = ndevs > 1 ? ndevs - 1 : -1;
	ksft_set_plan(1 + 9 * ndevs - (lost >= 0));
	vfio_lu_state_done(state);
	session = vfio_lu_session_and_iommufd(luo, SESSION_NAME, false, &iommufd);
	mfd = luo_session_retrieve_fd(session, RECORD_TOKEN);
	rec = mfd < 0 ? MAP_FAILED : mmap(NULL, sizeof(*rec), PROT_READ, MAP_SHARED, mfd, 0);
	if (rec == MAP_FAILED || rec->ndevs != ndevs)
		ksft_exit_fail_msg("no record of stage 1, or not for %d devices\n", ndevs);

	for (i = 0; i < ndevs; i++) {
		const char *bdf = devs[i].bdf;

		ksft_test_result(vfio_pci_only_at_load(bdf),
				 "stage2_kept_device_bound_to_vfio_pci_at_load %s\n", bdf);
		ret = read_power_state(bdf, pm, sizeof(pm));
		ksft_test_result(!ret && !strcmp(pm, "D0"),
				 "stage2_kept_device_in_d0_before_retrieve %s (%s, idle D3 %s)\n",
				 bdf, ret ? strerror(-ret) : pm, idle_d3() ? "on" : "off");
		status = vfio_lu_virtio_status_sysfs(bdf);
		ksft_test_result(status == rec->dev[i].status,
				 "stage2_status_kept_before_retrieve %s (status %#x, stage 1 %#x)\n",
				 bdf, status, rec->dev[i].status);
		if (i == lost) {
			lost_state_reported(session, iommufd, i);
			continue;
		}
		fd = vfio_lu_open_cdev(bdf);
		if (fd >= 0)
			close(fd);
		ksft_test_result(fd == -EBUSY, "stage2_kept_device_cdev_open_refused %s (%s)\n",
				 bdf, strerror(-fd));

		fd = luo_session_retrieve_fd(session, TOKEN(i));
		ret = fd < 0 ? fd : __vfio_device_bind_iommufd(fd, iommufd, NULL);
		ksft_test_result(!ret, "stage2_kept_device_retrieve_and_bind %s (%s)\n", bdf,
				 strerror(-ret));
		if (ret)
			continue;
		memset(&lu, 0, sizeof(lu));
		ret = vfio_lu_feature(fd, false, &lu);
		ksft_test_result(!ret && lu.mode == VFIO_DEVICE_LIVEUPDATE_KEEP &&
				 lu.flags == (VFIO_DEVICE_LIVEUPDATE_RETRIEVED |
					      VFIO_DEVICE_LIVEUPDATE_KEPT),
				 "stage2_reported_retrieved_and_kept %s (%s, mode %u flags %#x)\n",
				 bdf, strerror(-ret), lu.mode, lu.flags);
		ret = read_common(fd, &now);
		ksft_test_result(!ret && same(bdf, &rec->dev[i], &now),
				 "stage2_common_config_kept %s (%s)\n", bdf, strerror(-ret));
		ret = command(fd, &cmd);
		ksft_test_result(!ret && !(cmd & PCI_COMMAND_MASTER),
				 "stage2_bus_master_off_until_set %s (command %#x)\n", bdf, cmd);
		ret = set_bus_master(fd);
		ret = ret ?: command(fd, &cmd);
		ksft_test_result(!ret && (cmd & PCI_COMMAND_MASTER),
				 "stage2_vmm_sets_bus_master %s (%s, command %#x)\n", bdf,
				 strerror(-ret), cmd);
	}
	ret = luo_session_finish(session);
	ksft_test_result(!ret, "stage2_keep_finish (%s)\n", strerror(-ret));
	ksft_finished();
}

int main(int argc, char **argv)
{
	ksft_print_header();
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return luo_test(argc, argv, STATE_SESSION, stage1, stage2);
}
