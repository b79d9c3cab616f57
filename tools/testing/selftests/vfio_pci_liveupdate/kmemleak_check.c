// SPDX-License-Identifier: GPL-2.0
/*
 * kmemleak after the tests of a stage: run last in each kernel of the debug
 * test kernel. Has kmemleak scan memory twice, the second time once
 * kmemleak's minimum object age (5 s: younger objects are never reported) has
 * passed since the last test, and fails with every reported object (size,
 * backtrace) if it found any. Skips when the kernel
 * has no kmemleak; make test counts a skip as a failure.
 *
 *   kmemleak_check -s STAGE
 */
#define _GNU_SOURCE
#include <time.h>
#include "vfio_lu_util.h"
#include "kselftest.h"

#define KMEMLEAK	"/sys/kernel/debug/kmemleak"
#define MIN_AGE_S	6

int main(int argc, char **argv)
{
	int stage = vfio_lu_stage_arg(argc, argv), objects = 0, fd;
	struct timespec start;
	char line[512];
	FILE *f;

	clock_gettime(CLOCK_MONOTONIC, &start);

	ksft_print_header();
	ksft_set_plan(1);
	fd = open(KMEMLEAK, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ksft_test_result_skip("stage%d_kmemleak_no_leaks (%s: %s)\n", stage, KMEMLEAK,
				      strerror(errno));
		ksft_finished();
	}
	/*
	 * Two scans: kmemleak does not report an object whose contents changed
	 * since the previous scan (its checksum), which a first scan sees for any
	 * object it has not scanned before. The second starts once the objects
	 * of the last test are old enough to be reported: the wait runs during
	 * the first scan, which takes longer than that on the debug kernel.
	 */
	for (int i = 0; i < 2; i++) {
		if (i) {
			struct timespec now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - start.tv_sec < MIN_AGE_S)
				sleep(MIN_AGE_S - (now.tv_sec - start.tv_sec));
		}
		if (write(fd, "scan", 4) != 4)
			ksft_exit_fail_msg("write scan to %s: %s\n", KMEMLEAK, strerror(errno));
	}
	close(fd);

	f = fopen(KMEMLEAK, "re");
	if (!f)
		ksft_exit_fail_msg("%s: %s\n", KMEMLEAK, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "unreferenced object"))
			objects++;
		ksft_print_msg("%s", line);
	}
	fclose(f);
	ksft_test_result(!objects, "stage%d_kmemleak_no_leaks (%d object(s) reported)\n", stage,
			 objects);
	ksft_finished();
}
