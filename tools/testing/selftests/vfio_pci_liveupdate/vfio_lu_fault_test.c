// SPDX-License-Identifier: GPL-2.0
/*
 * What the new kernel does with preserved data it cannot use, on the fault
 * injection test's own devices (vfio_lu_fault_devs=, one per case), with
 * CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT:
 *
 *   vfio_lu_fault_test -s 1   preserve one device per case in one session;
 *                             for the first six, arm the corruption of its
 *                             blob or of the blob's handle (debugfs
 *                             corrupt_next_preserve) first
 *   vfio_lu_fault_test -s 2   leave one device unbound and bind one to
 *                             pci-stub; each retrieve fails with the errno of
 *                             its case and a log line naming the device, and
 *                             no oops; the devices stay held off (cdev open
 *                             EBUSY); the session still finishes, the
 *                             handler's finish runs for every file whose
 *                             blob it could read (which frees it) and lets
 *                             the devices be opened
 */
#define _GNU_SOURCE
#include "vfio_lu_util.h"
#include "kselftest.h"

#define SESSION_NAME	"vfio-lu-faults"
#define STATE_SESSION	"vfio-lu-faults-state"
#define FAULT_TOKEN(i)	(0x6661756c00ULL + (i))
#define KNOB		"/sys/kernel/debug/vfio_pci_liveupdate/corrupt_next_preserve"

enum setup { CORRUPT, UNBOUND, OTHER_DRIVER };

static const struct fault_case {
	const char *name;
	enum setup setup;
	const char *knob;	/* what to write to KNOB before preserve */
	int err;		/* what retrieve fails with */
	const char *log;	/* the log line's text after "<bdf>: " */
	bool bad_bus;		/* the log names bus 0xff, not the device */
	bool no_blob;		/* the log names no device: its blob is not read */
} cases[] = {
	{ "bad_magic", CORRUPT, "magic", EBADMSG,
	  "live update: retrieve: the preserved data is not usable: bad magic" },
	{ "bad_version", CORRUPT, "version", EPROTONOSUPPORT,
	  "live update: retrieve: the preserved data is not usable: unknown version" },
	{ "bad_length", CORRUPT, "length", EMSGSIZE,
	  "live update: retrieve: the preserved data is not usable: bad length" },
	{ "wrong_identity", CORRUPT, "identity", ESTALE,
	  "live update: retrieve: identity mismatch" },
	{ "no_such_device", CORRUPT, "bdf", ENODEV,
	  "live update: retrieve: no PCI device at this address", true },
	/* fault.rs BAD_HANDLE: beyond the guest's memory. */
	{ "bad_handle", CORRUPT, "handle", EINVAL,
	  "the preserved data of an incoming file, at 0x4000000000000, is not preserved memory: EINVAL",
	  false, true },
	{ "not_bound", UNBOUND, NULL, ENODEV,
	  "live update: retrieve: the device is not bound to a driver" },
	{ "bound_to_pci_stub", OTHER_DRIVER, NULL, ENODEV,
	  "live update: retrieve: the device is bound to pci-stub, not vfio-pci" },
};

#define NCASES	((int)ARRAY_SIZE(cases))

static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

static void find_devices(void)
{
	if (ndevs < NCASES)
		ksft_exit_fail_msg("need %d devices (vfio_lu_fault_devs=), %d given\n", NCASES,
				   ndevs);
}

static void stage1(int luo)
{
	int session, iommufd, fd, ret, i;
	char armed[32];

	find_devices();
	if (access(KNOB, W_OK))
		ksft_exit_skip("%s: %s (CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT off?)\n", KNOB,
			       strerror(errno));
	ksft_set_plan(1 + NCASES);

	vfio_lu_state_create(luo, STATE_SESSION);
	session = luo_create_session(luo, SESSION_NAME);
	ksft_test_result(session >= 0, "stage1_fault_create_session\n");
	if (session < 0)
		ksft_exit_fail_msg("create session: %s\n", strerror(-session));
	close(luo);
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		ksft_exit_fail_msg("open /dev/iommu: %s\n", strerror(errno));

	for (i = 0; i < NCASES; i++) {
		const char *bdf = devs[i].bdf;
		bool disarmed = true;

		fd = vfio_lu_bound_cdev(bdf, iommufd);
		ret = fd < 0 ? fd : 0;
		if (!ret && cases[i].knob)
			ret = vfio_lu_write_file(KNOB, cases[i].knob);
		if (!ret)
			ret = luo_session_preserve_fd(session, fd, FAULT_TOKEN(i));
		/* The corruption is for one preserve only. */
		if (!ret && cases[i].knob)
			disarmed = !vfio_lu_read_file(KNOB, armed, sizeof(armed)) &&
				   !strncmp(armed, "none", 4);
		if (!disarmed)
			ksft_print_msg("%s: the corruption stayed armed after preserve\n", bdf);
		ksft_test_result(!ret && disarmed, "stage1_fault_preserve_%s %s (%s)\n",
				 cases[i].name, bdf, strerror(-ret));
		/* The device fd stays open, as a VMM's would. */
	}
	ret = vfio_lu_hold_fds_for_kexec();
	if (ret < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-ret));
	ksft_finished();
}

/* Unbind @bdf from its driver; bind it to @driver unless NULL. */
static int rebind(const char *bdf, const char *driver)
{
	char path[PATH_MAX], drv[64];
	int ret;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
	ret = vfio_lu_write_file(path, driver ? driver : "none");
	vfio_lu_driver(bdf, drv, sizeof(drv));
	if (!ret && drv[0]) {
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver/unbind", bdf);
		ret = vfio_lu_write_file(path, bdf);
	}
	if (!ret && driver)
		ret = vfio_lu_write_file(PCI_DEVICES "/../drivers_probe", bdf);
	if (ret)
		return ret;
	vfio_lu_driver(bdf, drv, sizeof(drv));
	return strcmp(drv, driver ? driver : "") ? -ENXIO : 0;
}

/*
 * The address the log names for case @i: the device's, or for a "bdf"
 * corruption the same "dddd:bb:dd.f" on bus ff.
 */
static const char *log_address(int i)
{
	static char out[sizeof(devs[0].bdf)];
	const char *bdf = devs[i].bdf;

	if (!cases[i].bad_bus)
		return bdf;
	snprintf(out, sizeof(out), "%.5sff%s", bdf, bdf + 7);
	return out;
}

/*
 * Whether the cdev of every device that is still bound to vfio-pci and whose
 * blob names it (the corruptions but "bdf") gives @want on open (0: opens).
 * The finish of a file whose blob cannot be read ("handle") cannot end its
 * device's hold-off (faults.rst, "Known limitation"): not asked to open.
 */
static bool cdev_opens_give(int want)
{
	bool all = true;

	for (int i = 0; i < NCASES; i++) {
		int fd;

		if (cases[i].setup != CORRUPT || cases[i].bad_bus || (cases[i].no_blob && !want))
			continue;
		fd = vfio_lu_open_cdev(devs[i].bdf);
		if (fd >= 0)
			close(fd);
		if ((fd < 0 ? fd : 0) != want) {
			ksft_print_msg("%s: cdev open: %s, want %s\n", devs[i].bdf,
				       fd < 0 ? strerror(-fd) : "opened",
				       want ? strerror(-want) : "opened");
			all = false;
		}
	}
	return all;
}

static void stage2(int luo, int state)
{
	int session, kmsg, ret, i, logs[NCASES];
	char needle[256];

	find_devices();
	for (i = 0, ret = 0; i < NCASES; i++)
		ret += !cases[i].no_blob;
	/* A finish per case whose blob was read: */
	ksft_set_plan(7 + NCASES + ret);

	vfio_lu_state_done(state);
	session = luo_retrieve_session(luo, SESSION_NAME);
	ksft_test_result(session >= 0, "stage2_fault_retrieve_session\n");
	if (session < 0)
		ksft_exit_fail_msg("retrieve session: %s\n", strerror(-session));
	close(luo);

	for (i = 0; i < NCASES; i++) {
		if (cases[i].setup == UNBOUND) {
			ret = rebind(devs[i].bdf, NULL);
			ksft_test_result(!ret, "stage2_fault_unbind %s (%s)\n", devs[i].bdf,
					 strerror(-ret));
		} else if (cases[i].setup == OTHER_DRIVER) {
			ret = rebind(devs[i].bdf, "pci-stub");
			ksft_test_result(!ret, "stage2_fault_bind_pci_stub %s (%s)\n", devs[i].bdf,
					 strerror(-ret));
		}
	}

	/* Held off until retrieved or finished: */
	ksft_test_result(cdev_opens_give(-EBUSY), "stage2_fault_open_refused_before_retrieve\n");

	for (i = 0; i < NCASES; i++) {
		const char *bdf = devs[i].bdf, *got;
		bool logged;

		kmsg = vfio_lu_kmsg_open();
		ret = luo_session_retrieve_fd(session, FAULT_TOKEN(i));
		if (cases[i].no_blob)
			snprintf(needle, sizeof(needle), "%s", cases[i].log);
		else
			snprintf(needle, sizeof(needle), "%.15s: %s", log_address(i), cases[i].log);
		logged = kmsg >= 0 && vfio_lu_kmsg_has(kmsg, needle);
		if (!logged)
			ksft_print_msg("no log line '%s'\n", needle);
		if (kmsg >= 0)
			close(kmsg);
		got = "a file";
		if (ret >= 0)
			close(ret);
		else
			got = strerrorname_np(-ret);
		ksft_test_result(ret == -cases[i].err && logged,
				 "stage2_fault_retrieve_%s_fails_%s %s (got %s)\n", cases[i].name,
				 strerrorname_np(cases[i].err), bdf, got);
	}

	/* a failed retrieve is no retrieve, */
	ksft_test_result(cdev_opens_give(-EBUSY),
			 "stage2_fault_open_refused_after_failed_retrieve\n");

	/*
	 * Every file failed: the session finishes, and finish runs for each
	 * whose blob was read (a log reader per file: reading one consumes the
	 * log). Without a blob there is nothing to free, and no device to name.
	 */
	for (i = 0; i < NCASES; i++) {
		logs[i] = -1;
		if (!cases[i].no_blob)
			logs[i] = vfio_lu_kmsg_open();
	}
	ret = luo_session_finish(session);
	ksft_test_result(!ret, "stage2_fault_finish_after_failed_retrieves (%s)\n",
			 strerror(-ret));
	for (i = 0; i < NCASES; i++) {
		if (cases[i].no_blob)
			continue;
		snprintf(needle, sizeof(needle), "%.15s: live update: finished (Failed",
			 log_address(i));
		ksft_test_result(logs[i] >= 0 && vfio_lu_kmsg_has(logs[i], needle),
				 "stage2_fault_finish_frees_%s %s\n", cases[i].name, devs[i].bdf);
		if (logs[i] >= 0)
			close(logs[i]);
	}
	/* and the finish lets them go. */
	ksft_test_result(cdev_opens_give(0), "stage2_fault_opens_after_finish\n");
	close(session);
	ksft_finished();
}

int main(int argc, char **argv)
{
	ksft_print_header();
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	return luo_test(argc, argv, STATE_SESSION, stage1, stage2);
}
