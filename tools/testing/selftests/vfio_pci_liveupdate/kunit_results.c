// SPDX-License-Identifier: GPL-2.0
/*
 * Report the KUnit results of the given suites as flat KTAP, one result per
 * test case, from /sys/kernel/debug/kunit/<suite>/results (KUnit runs the
 * suites of a module when the module loads). A suite that did not run is a
 * failure.
 *
 *   kunit_results SUITE...
 */
#define _GNU_SOURCE
#include <ctype.h>

#include "vfio_lu_util.h"
#include "kselftest.h"

#define KUNIT_DEBUGFS	"/sys/kernel/debug/kunit"
#define MAX_CASES	256

struct result {
	char name[256];
	bool ok, skip;
};

/* Test case results: the indented "ok N name" lines of a suite's log. */
static int read_suite(const char *suite, struct result *res, int max)
{
	char path[PATH_MAX], line[512];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), KUNIT_DEBUGFS "/%s/results", suite);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f) && n < max) {
		char *p = line, name[128];
		int num, ok;

		if (!isspace((unsigned char)*p))
			continue;
		while (isspace((unsigned char)*p))
			p++;
		if (sscanf(p, "ok %d %127s", &num, name) == 2)
			ok = 1;
		else if (sscanf(p, "not ok %d %127s", &num, name) == 2)
			ok = 0;
		else
			continue;
		snprintf(res[n].name, sizeof(res[n].name), "%s.%s", suite, name);
		res[n].ok = ok;
		res[n].skip = !!strstr(p, "# SKIP");
		n++;
	}
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	static struct result res[MAX_CASES];
	int n = 0, i;

	ksft_print_header();
	for (i = 1; i < argc; i++) {
		int got = read_suite(argv[i], res + n, MAX_CASES - n);

		if (got <= 0) {
			snprintf(res[n].name, sizeof(res[n].name), "%s.ran", argv[i]);
			res[n].ok = false;
			res[n].skip = false;
			ksft_print_msg("suite %s: no results in " KUNIT_DEBUGFS " (%s)\n",
				       argv[i], got < 0 ? strerror(-got) : "empty");
			n++;
			continue;
		}
		n += got;
	}

	ksft_set_plan(n);
	for (i = 0; i < n; i++) {
		if (res[i].skip)
			ksft_test_result_skip("%s\n", res[i].name);
		else
			ksft_test_result(res[i].ok, "%s\n", res[i].name);
	}
	ksft_finished();
}
