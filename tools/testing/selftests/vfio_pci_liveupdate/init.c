// SPDX-License-Identifier: GPL-2.0
/*
 * PID 1 of the test guest, for both kernels of the two-stage test.
 *
 * Stage 1 (vfio_lu_stage=1 on the command line):
 *   mount, load vfio_pci_liveupdate.ko, bind the emulated devices to
 *   vfio-pci, load /kernel + /initrd.img with kexec_file_load() (command
 *   line with vfio_lu_stage=2; loaded before the tests, as the upstream LUO
 *   tests do, so that a test can try a kexec that must be refused), run the
 *   stage-1 tests, and kexec.
 * Stage 2: the same up to the tests, then power off.
 *
 * The tests take their devices by BDF, as the VFIO selftests do: init finds
 * the devices of vfio_lu_devs=, vfio_lu_fault_devs=, vfio_lu_reset_devs= and
 * vfio_lu_keep_devs= (vendor:device lists from the host), sorted by BDF, and
 * gives every test their BDFs in the environment (VFIO_LU_BDFS,
 * VFIO_LU_FAULT_BDFS, VFIO_LU_RESET_BDFS, VFIO_LU_KEEP_BDFS, separated by
 * spaces; VFIO_SELFTESTS_BDF is the first of VFIO_LU_BDFS). A word "$NAME"
 * in a test list is replaced by the words of that variable:
 * "vfio_lu_kexec_test -s 1 $VFIO_LU_BDFS".
 *
 * The module is loaded before anything opens /dev/liveupdate: after a kexec,
 * LUO matches incoming files to handlers on the first open.
 *
 * Test output goes to the console and to the second serial port (ttyS1),
 * which carries nothing but KTAP and "# vfio-lu:" status lines to the host.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "vfio_lu_util.h"

#define KERNEL_IMAGE	"/kernel"
#define INITRD_IMAGE	"/initrd.img"
#define TESTS_LIST	"/tests/stage%d"

static int ktap_fd = -1;

/* The environment of the tests: PATH and the devices, "NAME=BDF BDF ...". */
static char env_selftests_bdf[64] = "VFIO_SELFTESTS_BDF=";
static char env_devs[1024] = "VFIO_LU_BDFS=";
static char env_fault_devs[1024] = "VFIO_LU_FAULT_BDFS=";
static char env_reset_devs[1024] = "VFIO_LU_RESET_BDFS=";
static char env_keep_devs[1024] = "VFIO_LU_KEEP_BDFS=";
static char *test_env[] = {
	"PATH=/tests", env_selftests_bdf, env_devs, env_fault_devs, env_reset_devs, env_keep_devs,
	NULL,
};

/* To the console and the host's KTAP channel; a lost line cannot be reported. */
static void emit(const char *buf, size_t n)
{
	ssize_t ret = write(STDOUT_FILENO, buf, n);

	if (ktap_fd >= 0)
		ret = write(ktap_fd, buf, n);
	(void)ret;
}

/*
 * A status line, to the console and to the host's KTAP channel. It carries
 * the kernel's uptime and the TSC, which keeps counting across the kexec (the
 * same virtual machine), so that the host can time the jump between kernels.
 */
static void say(const char *fmt, ...)
{
	struct timespec ts;
	char line[512];
	va_list ap;
	int n;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	n = snprintf(line, sizeof(line), "# vfio-lu: [up=%ld.%06ld tsc=%llu] ",
		     (long)ts.tv_sec, ts.tv_nsec / 1000,
		     (unsigned long long)__builtin_ia32_rdtsc());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	emit(line, n);
}

static void mount_filesystems(void)
{
	mkdir("/dev", 0755);
	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/tmp", 01777);
	if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL))
		say("mount devtmpfs: %s", strerror(errno));
	if (mount("proc", "/proc", "proc", 0, NULL))
		say("mount proc: %s", strerror(errno));
	if (mount("sysfs", "/sys", "sysfs", 0, NULL))
		say("mount sysfs: %s", strerror(errno));
	if (mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL))
		say("mount debugfs: %s", strerror(errno));
	if (mount("tmpfs", "/tmp", "tmpfs", 0, NULL))
		say("mount tmpfs: %s", strerror(errno));
	if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL))
		say("mount tracefs: %s", strerror(errno));
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		say("%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * The module's tracepoints (how long each freeze, reset and retrieve took),
 * printed on the console as they fire (the host boots the guest with
 * tp_printk; the sysctl only works on such a boot): the old kernel's trace
 * buffer is gone after the kexec, and the host's report and the benchmark
 * read them from the serial log.
 */
static void trace_module_events(void)
{
	write_file("/sys/kernel/tracing/events/" VFIO_LU_MODULE "/enable", "1");
	write_file("/proc/sys/kernel/tracepoint_printk", "1");
}

/*
 * The parameters of module @name, from "<name>.<param>=<value>" on the kernel
 * command line, as modprobe passes them (the kernel itself does not for a
 * module loaded later).
 */
static void module_params(const char *name, char *params, size_t len)
{
	char cmdline[4096], prefix[64], *tok, *save;
	size_t n = 0;

	params[0] = '\0';
	snprintf(prefix, sizeof(prefix), "%s.", name);
	if (vfio_lu_read_file("/proc/cmdline", cmdline, sizeof(cmdline)))
		return;
	for (tok = strtok_r(cmdline, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		if (!strncmp(tok, prefix, strlen(prefix)) && n < len)
			n += snprintf(params + n, len - n, "%s%s", n ? " " : "",
				      tok + strlen(prefix));
}

/* Load /lib/modules/@name.ko with its parameters from the command line. */
static void load_one(const char *name)
{
	char path[PATH_MAX], params[256];
	int fd;

	snprintf(path, sizeof(path), VFIO_LU_MODULES_DIR "/%s.ko", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		say("module %s: %s", path, strerror(errno));
		return;
	}
	module_params(name, params, sizeof(params));
	if (syscall(SYS_finit_module, fd, params, 0) && errno != EEXIST)
		say("loading %s failed: %s", name, strerror(errno));
	else
		say("loaded %s%s%s", name, params[0] ? " " : "", params);
	close(fd);
}

/*
 * The modules in the order of /lib/modules/load (one name a line, the
 * dependencies first: VFIO, vfio-pci-core and vfio-pci when they are modules,
 * as distributions build them), then ours.
 */
static void load_module(void)
{
	FILE *order = fopen(VFIO_LU_MODULES_DIR "/load", "re");
	char name[64];

	while (order && fscanf(order, "%63s", name) == 1)
		if (strcmp(name, VFIO_LU_MODULE))
			load_one(name);
	if (order)
		fclose(order);
	load_one(VFIO_LU_MODULE);
}

/*
 * Keep the module's bind_preserved and damaged-list lines of the kernel log, from the
 * beginning of the log, in VFIO_LU_AT_LOAD_LOG: the tests check their
 * content long after, when the log may have moved on.
 */
static void record_load_log(void)
{
	int kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	FILE *out = fopen(VFIO_LU_AT_LOAD_LOG, "we");
	char rec[2048];
	ssize_t n;

	while (kmsg >= 0 && out) {
		n = read(kmsg, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		if (strstr(rec, "live update: bind_preserved") ||
		    strstr(rec, "the list of preserved devices is not usable"))
			fputs(strchr(rec, ';') ? strchr(rec, ';') + 1 : rec, out);
	}
	if (out)
		fclose(out);
	if (kmsg >= 0)
		close(kmsg);
}

/*
 * Record "<bdf> <driver or -> <driver_override>" for every PCI function in
 * VFIO_LU_AT_LOAD: what the module did to them when it loaded, before
 * bind_devices() does what a VMM's set-up script would.
 */
static void record_drivers(void)
{
	char path[PATH_MAX], drv[64], ovr[64];
	struct dirent *de;
	FILE *out;
	DIR *dir;

	dir = opendir(PCI_DEVICES);
	out = fopen(VFIO_LU_AT_LOAD, "we");
	if (!dir || !out) {
		say("cannot record the drivers at module load: %s", strerror(errno));
		goto out;
	}
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		vfio_lu_driver(de->d_name, drv, sizeof(drv));
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", de->d_name);
		if (vfio_lu_read_file(path, ovr, sizeof(ovr)))
			snprintf(ovr, sizeof(ovr), "?");
		ovr[strcspn(ovr, "\n")] = '\0';
		fprintf(out, "%s %s %s\n", de->d_name, drv[0] ? drv : "-", ovr[0] ? ovr : "(null)");
	}
out:
	if (out)
		fclose(out);
	if (dir)
		closedir(dir);
	record_load_log();
}

static int bdf_cmp(const void *a, const void *b)
{
	return strcmp(((const struct vfio_lu_dev *)a)->bdf,
		      ((const struct vfio_lu_dev *)b)->bdf);
}

/*
 * The PCI devices whose vendor:device is one of those the host asked for in
 * kernel parameter @key, sorted by BDF. Returns how many, or a negative errno.
 */
static int find_devs_of(const char *key, struct vfio_lu_dev *devs, int max)
{
	unsigned int ids[VFIO_LU_MAX_DEVS][2];
	int nids, n = 0, i;
	struct dirent *de;
	DIR *dir;

	nids = vfio_lu_wanted_ids(key, ids, VFIO_LU_MAX_DEVS);
	if (nids < 0)
		return nids;
	dir = opendir(PCI_DEVICES);
	if (!dir)
		return -errno;
	while ((de = readdir(dir)) && n < max) {
		struct vfio_lu_dev d = {};

		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(d.bdf))
			continue;
		snprintf(d.bdf, sizeof(d.bdf), "%s", de->d_name);
		if (vfio_lu_sysfs_hex(d.bdf, "vendor", &d.vendor) ||
		    vfio_lu_sysfs_hex(d.bdf, "device", &d.device))
			continue;
		for (i = 0; i < nids; i++) {
			if (ids[i][0] == d.vendor && ids[i][1] == d.device) {
				devs[n++] = d;
				break;
			}
		}
	}
	closedir(dir);
	qsort(devs, n, sizeof(*devs), bdf_cmp);
	return n;
}

/*
 * Bind the devices of kernel parameter @key to vfio-pci (driver_override +
 * drivers_probe, as a VMM's set-up script would do), and add their BDFs to
 * @env, an entry "NAME=" of the tests' environment of @len bytes.
 */
static void bind_devices(const char *key, char *env, size_t len)
{
	struct vfio_lu_dev devs[VFIO_LU_MAX_DEVS];
	size_t used = strlen(env), start = used;
	char path[PATH_MAX], drv[64];
	int n, i, ret;

	n = find_devs_of(key, devs, VFIO_LU_MAX_DEVS);
	if (n == -ENOENT && strcmp(key, "vfio_lu_devs"))
		return;		/* no fault injection devices in this run */
	if (n < 0) {
		say("no devices to bind (%s): %s", key, strerror(-n));
		return;
	}
	for (i = 0; i < n; i++) {
		const char *bdf = devs[i].bdf;
		char methods[128];

		if (used < len)
			used += snprintf(env + used, len - used, "%s%s", used > start ? " " : "",
					 bdf);

		snprintf(path, sizeof(path), PCI_DEVICES "/%s/reset_method", bdf);
		if (vfio_lu_read_file(path, methods, sizeof(methods)))
			snprintf(methods, sizeof(methods), "none");
		say("%s reset methods: %s", bdf, methods);

		vfio_lu_driver(bdf, drv, sizeof(drv));
		if (!strcmp(drv, "vfio-pci")) {
			say("%s (%04x:%04x) already bound to vfio-pci", bdf,
			    devs[i].vendor, devs[i].device);
			continue;
		}
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
		ret = vfio_lu_write_file(path, "vfio-pci");
		if (!ret && drv[0]) {
			snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver/unbind", bdf);
			ret = vfio_lu_write_file(path, bdf);
		}
		if (!ret)
			ret = vfio_lu_write_file(PCI_DEVICES "/../drivers_probe", bdf);
		vfio_lu_driver(bdf, drv, sizeof(drv));
		say("%s (%04x:%04x) -> %s%s%s", bdf, devs[i].vendor, devs[i].device,
		    drv[0] ? drv : "no driver", ret ? ": " : "",
		    ret ? strerror(-ret) : "");
	}
}

/* The value of "$NAME" in the tests' environment, or NULL. */
static const char *test_env_value(const char *word)
{
	size_t len = strlen(word + 1);

	for (char **e = test_env; *e; e++)
		if (!strncmp(*e, word + 1, len) && (*e)[len] == '=')
			return *e + len + 1;
	return NULL;
}

/*
 * Run one test command line, copying its output to console and ttyS1. A
 * word "$NAME" is replaced by the words of the tests' variable NAME, which
 * must name at least one device.
 */
static int run_test(char *cmd)
{
	char *argv[80], *save, *wsave, buf[4096], words[4096];
	int pfd[2], status, argc = 0;
	size_t used = 0;
	ssize_t n;
	pid_t pid;

	for (char *t = strtok_r(cmd, " ", &save); t && argc < 79;
	     t = strtok_r(NULL, " ", &save)) {
		const char *val = t[0] == '$' ? test_env_value(t) : NULL;
		char *w;

		if (t[0] != '$') {
			argv[argc++] = t;
			continue;
		}
		if (!val || !val[0] || used + strlen(val) + 1 > sizeof(words)) {
			say("test %s: %s names no devices", argv[0], t);
			return 1;
		}
		w = memcpy(words + used, val, strlen(val) + 1);
		used += strlen(val) + 1;
		for (w = strtok_r(w, " ", &wsave); w && argc < 79; w = strtok_r(NULL, " ", &wsave))
			argv[argc++] = w;
	}
	argv[argc] = NULL;
	if (!argc)
		return 0;
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		execve(argv[0], argv, test_env);
		fprintf(stderr, "execve %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	while ((n = read(pfd[0], buf, sizeof(buf))) > 0)
		emit(buf, n);
	close(pfd[0]);
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFSIGNALED(status)) {
		say("test %s killed by signal %d", argv[0], WTERMSIG(status));
		return 128 + WTERMSIG(status);
	}
	say("test %s exit=%d", argv[0], WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

static int run_tests(int stage)
{
	char list[PATH_MAX], line[512];
	int failed = 0;
	FILE *f;

	snprintf(list, sizeof(list), TESTS_LIST, stage);
	f = fopen(list, "re");
	if (!f) {
		say("stage %d: no test list %s", stage, list);
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (run_test(line))
			failed++;
	}
	fclose(f);
	return failed;
}

static int kexec_load_next(void)
{
	char cmdline[4096], *p;
	int kfd, ifd, ret;

	ret = vfio_lu_read_file("/proc/cmdline", cmdline, sizeof(cmdline) - 16);
	if (ret)
		return ret;
	p = strstr(cmdline, "vfio_lu_stage=1");
	if (p)
		p[strlen("vfio_lu_stage=")] = '2';
	else
		strcat(cmdline, " vfio_lu_stage=2");

	kfd = open(KERNEL_IMAGE, O_RDONLY | O_CLOEXEC);
	if (kfd < 0)
		return -errno;
	ifd = open(INITRD_IMAGE, O_RDONLY | O_CLOEXEC);
	if (ifd < 0) {
		ret = -errno;
		close(kfd);
		return ret;
	}
	ret = syscall(SYS_kexec_file_load, kfd, ifd, strlen(cmdline) + 1,
		      cmdline, 0UL) ? -errno : 0;
	close(ifd);
	close(kfd);
	return ret;
}

int main(void)
{
	int stage, failed, ret = 0;

	mount_filesystems();
	ktap_fd = open("/dev/ttyS1", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	stage = vfio_lu_stage();
	say("stage %d: init", stage);

	load_module();
	trace_module_events();
	record_drivers();
	bind_devices("vfio_lu_devs", env_devs, sizeof(env_devs));
	bind_devices("vfio_lu_fault_devs", env_fault_devs, sizeof(env_fault_devs));
	bind_devices("vfio_lu_reset_devs", env_reset_devs, sizeof(env_reset_devs));
	bind_devices("vfio_lu_keep_devs", env_keep_devs, sizeof(env_keep_devs));
	/* The first device, for a program given none (libvfio's variable). */
	snprintf(env_selftests_bdf + strlen(env_selftests_bdf),
		 sizeof(env_selftests_bdf) - strlen(env_selftests_bdf), "%.*s",
		 (int)strcspn(strchr(env_devs, '=') + 1, " "), strchr(env_devs, '=') + 1);

	if (stage == 1) {
		ret = kexec_load_next();
		if (ret)
			say("stage 1: kexec_file_load failed: %s", strerror(-ret));
	}

	failed = run_tests(stage);
	say("stage %d: tests done, %d program(s) failed", stage, failed);

	if (stage == 1) {
		if (!ret) {
			say("stage 1: done, kexec");
			sync();
			reboot(RB_KEXEC);
			say("stage 1: reboot(KEXEC) failed: %s", strerror(errno));
		}
	} else {
		say("stage 2: done, power off");
	}
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
