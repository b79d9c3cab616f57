// SPDX-License-Identifier: GPL-2.0
/*
 * A memfd preserved in a LUO session before the kexec comes back after it
 * with its contents: proves that KHO and LUO carry state across the reboot
 * of the test bed.
 *
 *   luo_memfd_kexec -s 1   create the session, preserve the memfd, then leave
 *                          a child holding the session open for the kexec
 *   luo_memfd_kexec -s 2   retrieve the session and the memfd, check every
 *                          byte, finish the session
 */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "vfio_lu_util.h"
#include "kselftest.h"

#define SESSION_NAME	"vfio-lu-memfd"
#define STATE_SESSION	"vfio-lu-memfd-state"
#define MEMFD_TOKEN	0x6d656d66ULL
#define MEMFD_PAGES	4

/* The expected content: a pattern that depends on every byte's offset. */
static unsigned char pattern(size_t off)
{
	return (unsigned char)((off * 2654435761u) >> 13) ^ (off >> 12);
}

static void stage1(int luo)
{
	size_t len = MEMFD_PAGES * getpagesize();
	int session, mfd;
	unsigned char *map;
	pid_t pid;

	ksft_set_plan(3);

	/* luo_test() opened it, or skipped the test. */
	ksft_test_result(luo >= 0, "stage1_open_dev_liveupdate\n");
	vfio_lu_state_create(luo, STATE_SESSION);

	session = luo_create_session(luo, SESSION_NAME);
	ksft_test_result(session >= 0, "stage1_create_session\n");
	if (session < 0)
		ksft_exit_fail_msg("create session: %s\n", strerror(-session));

	mfd = memfd_create("vfio-lu-memfd", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, len))
		ksft_exit_fail_msg("memfd: %s\n", strerror(errno));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (map == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	for (size_t i = 0; i < len; i++)
		map[i] = pattern(i);
	munmap(map, len);

	ksft_test_result(!luo_session_preserve_fd(session, mfd, MEMFD_TOKEN),
			 "stage1_preserve_memfd\n");
	close(mfd);
	close(luo);

	/* The session lives as long as its fd: hand it to a child that waits for the kexec. */
	pid = vfio_lu_hold_fds_for_kexec();
	if (pid < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(-pid));
	ksft_print_msg("session '%s' held by pid %d for the kexec\n", SESSION_NAME, pid);
	ksft_finished();
}

static void stage2(int luo, int state)
{
	size_t len = MEMFD_PAGES * getpagesize(), bad = 0, i;
	int session, mfd;
	unsigned char *map;

	ksft_set_plan(4);
	vfio_lu_state_done(state);

	session = luo_retrieve_session(luo, SESSION_NAME);
	ksft_test_result(session >= 0, "stage2_retrieve_session\n");
	if (session < 0)
		ksft_exit_fail_msg("retrieve session: %s\n", strerror(-session));

	mfd = luo_session_retrieve_fd(session, MEMFD_TOKEN);
	ksft_test_result(mfd >= 0, "stage2_retrieve_memfd\n");
	if (mfd < 0)
		ksft_exit_fail_msg("retrieve memfd: %s\n", strerror(-mfd));

	map = mmap(NULL, len, PROT_READ, MAP_SHARED, mfd, 0);
	if (map == MAP_FAILED)
		ksft_exit_fail_msg("mmap: %s\n", strerror(errno));
	for (i = 0; i < len; i++)
		if (map[i] != pattern(i) && bad++ < 4)
			ksft_print_msg("byte %zu: %#x, expected %#x\n", i, map[i], pattern(i));
	munmap(map, len);
	ksft_test_result(bad == 0, "stage2_memfd_content_intact\n");

	ksft_test_result(!luo_session_finish(session),
			 "stage2_finish_session\n");
	close(mfd);
	close(session);
	close(luo);
	ksft_finished();
}

int main(int argc, char **argv)
{
	ksft_print_header();
	return luo_test(argc, argv, STATE_SESSION, stage1, stage2);
}
