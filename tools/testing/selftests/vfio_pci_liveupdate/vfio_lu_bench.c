// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark of a device live update, run by scripts/bench.sh (not a test).
 *
 *   vfio_lu_bench -s 1 [-r REPS] [-k] BDF...
 *	open and bind every emulated device (-k: in keep mode, see
 *	VFIO_DEVICE_FEATURE_LIVEUPDATE; also with vfio_lu_bench_keep=1 on
 *	the kernel command line), then REPS times preserve each
 *	device and a one-page memfd (the baseline, through the kernel's memfd
 *	handler) in fresh sessions and close them; then preserve them for real,
 *	one session for the devices and one for the memfd, and leave a child
 *	holding them for the kexec that init starts.
 *   vfio_lu_bench -s 2 BDF...
 *	retrieve the memfd session and the memfd, then the device session and
 *	every device, bind them, and finish both sessions.
 *
 * Every sample is a line "# bench: <phase> <kind> <microseconds>" on the
 * KTAP channel, timed from userspace around the ioctl (CLOCK_MONOTONIC);
 * the freeze is timed inside the kernel and read from its log by the host,
 * and the TSC of the last retrieve, with the TSC of init's reboot(KEXEC),
 * gives the time from the kexec to the last device retrieved.
 * The program also prints KTAP results so the test bed's report can tell
 * a run that worked.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <time.h>

#include "vfio_lu_util.h"
#include "kselftest.h"

#define DEV_SESSION	"vfio-lu-bench-devices"
#define MEMFD_SESSION	"vfio-lu-bench-memfd"
#define DEV_TOKEN(i)	(0x62656e6300ULL + (i))
#define MEMFD_TOKEN	0x62656e63ffULL

/* What stage 1 leaves for stage 2, in the preserved memfd. */
struct record {
	uint64_t magic;
	int ndevs;
};

#define RECORD_MAGIC	0x76666c7562656e63ULL

static struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
static int ndevs;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void sample(const char *phase, const char *kind, double us)
{
	printf("# bench: %s %s %.1f\n", phase, kind, us);
}

/* Preserve @fd in @session, timed as a sample of @kind. */
static int timed_preserve(int session, int fd, __u64 token, const char *kind)
{
	double t = now_us();
	int ret = luo_session_preserve_fd(session, fd, token);

	if (!ret)
		sample("preserve", kind, now_us() - t);
	return ret;
}

/*
 * New device and memfd sessions from @luo, in *@dsess and *@msess, with the
 * @ndevs device fds @fds and the memfd @mfd preserved, each timed. 0 or
 * -errno.
 */
static int preserve_in_new_sessions(int luo, const int *fds, int ndevs, int mfd, int *dsess,
				    int *msess)
{
	int ret = 0, i;

	*dsess = luo_create_session(luo, DEV_SESSION);
	*msess = luo_create_session(luo, MEMFD_SESSION);
	if (*dsess < 0 || *msess < 0)
		ksft_exit_fail_msg("create sessions: %s\n", strerror(errno));
	for (i = 0; i < ndevs && !ret; i++)
		ret = timed_preserve(*dsess, fds[i], DEV_TOKEN(i), "vfio");
	if (!ret)
		ret = timed_preserve(*msess, mfd, MEMFD_TOKEN, "memfd");
	return ret;
}

static int open_luo(void)
{
	int luo = luo_open_device();

	if (luo < 0)
		ksft_exit_fail_msg("open " LUO_DEVICE ": %s\n", strerror(errno));
	return luo;
}

static int stage1(int reps, bool keep)
{
	int fds[VFIO_LU_MAX_DEVS];
	int luo, iommufd, mfd, dsess, msess, ret = 0, r, i;
	struct record *rec;

	ksft_set_plan(2);
	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		ksft_exit_fail_msg("open /dev/iommu: %s\n", strerror(errno));
	for (i = 0; i < ndevs; i++) {
		fds[i] = vfio_lu_open_cdev(devs[i].bdf);
		ret = fds[i] < 0 ? fds[i] : __vfio_device_bind_iommufd(fds[i], iommufd, NULL);
		/* bench.sh's keep mode runs: every device keeps its state. */
		if (!ret && keep)
			ret = vfio_lu_set_mode(fds[i], VFIO_DEVICE_LIVEUPDATE_KEEP);
		if (ret)
			ksft_exit_fail_msg("%s: open and bind: %s\n", devs[i].bdf, strerror(-ret));
	}
	mfd = memfd_create("vfio-lu-bench", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, getpagesize()))
		ksft_exit_fail_msg("memfd: %s\n", strerror(errno));
	rec = mmap(NULL, getpagesize(), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (rec == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	rec->magic = RECORD_MAGIC;
	rec->ndevs = ndevs;

	/* Warm-up and repetitions: closing a session unpreserves its files. */
	luo = open_luo();
	for (r = 0; r < reps && !ret; r++) {
		ret = preserve_in_new_sessions(luo, fds, ndevs, mfd, &dsess, &msess);
		close(dsess);
		close(msess);
	}
	ksft_test_result(!ret, "bench_preserve_repetitions %d x %d device(s) (%s)\n",
			 reps, ndevs, strerror(-ret));

	/* For real: the sessions stay open across the kexec. */
	ret = preserve_in_new_sessions(luo, fds, ndevs, mfd, &dsess, &msess);
	close(luo);
	ksft_test_result(!ret, "bench_preserve %d device(s) and a memfd (%s)\n", ndevs,
			 strerror(-ret));
	if (ret)
		ksft_exit_fail();
	munmap(rec, getpagesize());
	ret = vfio_lu_hold_fds_for_kexec();
	if (ret < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-ret));
	ksft_finished();
}

static int stage2(void)
{
	double t;
	int luo, iommufd, dsess, msess, mfd, fd, ret, i;
	struct record *rec;
	uint64_t last_tsc = 0;

	ksft_set_plan(3);
	luo = open_luo();
	msess = luo_retrieve_session(luo, MEMFD_SESSION);
	dsess = luo_retrieve_session(luo, DEV_SESSION);
	if (msess < 0 || dsess < 0)
		ksft_exit_fail_msg("retrieve sessions: %s\n", strerror(errno));

	t = now_us();
	mfd = luo_session_retrieve_fd(msess, MEMFD_TOKEN);
	if (mfd < 0)
		ksft_exit_fail_msg("retrieve memfd: %s\n", strerror(-mfd));
	sample("retrieve", "memfd", now_us() - t);
	rec = mmap(NULL, getpagesize(), PROT_READ, MAP_SHARED, mfd, 0);
	if (rec == MAP_FAILED || rec->magic != RECORD_MAGIC || rec->ndevs != ndevs)
		ksft_exit_fail_msg("no record of stage 1 for %d device(s)\n", ndevs);

	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0)
		ksft_exit_fail_msg("open /dev/iommu: %s\n", strerror(errno));
	for (i = 0, ret = 0; i < ndevs && !ret; i++) {
		t = now_us();
		fd = luo_session_retrieve_fd(dsess, DEV_TOKEN(i));
		if (fd < 0) {
			ret = fd;
			break;
		}
		sample("retrieve", "vfio", now_us() - t);
		last_tsc = __builtin_ia32_rdtsc();
		t = now_us();
		ret = __vfio_device_bind_iommufd(fd, iommufd, NULL);
		if (!ret)
			sample("bind", "vfio", now_us() - t);
	}
	ksft_test_result(!ret, "bench_retrieve_and_bind %d device(s) (%s)\n", ndevs,
			 strerror(-ret));
	if (!ret)
		printf("# bench: last_retrieve_tsc %llu\n", (unsigned long long)last_tsc);

	t = now_us();
	ret = luo_session_finish(dsess);
	if (!ret)
		sample("finish", "vfio", now_us() - t);
	ksft_test_result(!ret, "bench_finish_devices (%s)\n", strerror(-ret));
	t = now_us();
	ret = luo_session_finish(msess);
	if (!ret)
		sample("finish", "memfd", now_us() - t);
	ksft_test_result(!ret, "bench_finish_memfd (%s)\n", strerror(-ret));
	ksft_finished();
}

int main(int argc, char **argv)
{
	int opt, stage = 0, reps = 10;
	char val[8] = "";
	bool keep;

	/* bench.sh's keep mode runs set it on the kernel command line. */
	vfio_lu_cmdline("vfio_lu_bench_keep", val, sizeof(val));
	keep = !strcmp(val, "1");

	ksft_print_header();
	/* The BDFs at the end of the command line, or $VFIO_SELFTESTS_BDF. */
	ndevs = vfio_lu_devs_from_args(&argc, argv, devs, VFIO_LU_MAX_DEVS);
	while ((opt = getopt(argc, argv, "s:r:k")) != -1) {
		if (opt == 's')
			stage = atoi(optarg);
		else if (opt == 'r')
			reps = atoi(optarg);
		else if (opt == 'k')
			keep = true;
	}
	switch (stage) {
	case 1:
		return stage1(reps, keep);
	case 2:
		return stage2();
	}
	ksft_exit_fail_msg("usage: %s -s 1|2 [-r REPS] [-k]\n", argv[0]);
}
