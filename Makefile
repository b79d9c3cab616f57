# SPDX-License-Identifier: GPL-2.0
#
# The project's two commands (see README.md):
#   make run    build the kernel with our module, boot QEMU with emulated PCI
#               devices, live-update (kexec) them, print what happened
#   make test   the same kernel with debug checks (KASAN, lockdep, kmemleak),
#               then every test; ends with "N passed, N failed"
#
# Both install what is missing first (scripts/setup.sh) and rebuild only what
# changed (the kernel tree and objects stay in build/).

.PHONY: run test bench setup kernel clean distclean

run: kernel
	@scripts/vmtest.sh --mode demo --name run
	@scripts/vmtest.sh --mode demo --name run-noiommu --noiommu --lists demorun \
		--devices "virtio-net-rx virtio-net-rx virtio-net-rx"

# The tests run on the debug kernel (KASAN, lockdep, kmemleak, ...: config.debug
# in the selftests), built in build/obj-debug; run and bench use build/obj.
test: setup
	@VFIO_LU_KERNEL=debug scripts/kernel.sh
	@VFIO_LU_KERNEL=debug scripts/test.sh

# Benchmark (not a test): every phase of a live update for 1, 4, 8 and 16
# devices, parallel and serial resets; table and plot in docs/bench/.
bench: kernel
	@scripts/bench.sh

# The whole change as a git format-patch series against pristine 7.3, in
# build/series/ (scripts/series.sh; "scripts/series.sh export DIR" for another
# place). make test checks it (scripts/lint.sh runs "scripts/series.sh check").
.PHONY: series
series: kernel
	@scripts/series.sh export

# Documentation: the kernel's docs build renders Documentation/driver-api/
# vfio-pci-liveupdate/ into build/docs/html/, with the kernel crate's rustdoc;
# fails on any warning about our pages or items (scripts/docs.sh).
.PHONY: docs
docs: kernel
	@scripts/docs.sh

kernel: setup
	@scripts/kernel.sh

setup:
	@scripts/setup.sh

# Remove the guest programs and run logs; keep the kernel tree and objects.
clean:
	rm -rf build/guest build/logs

# Remove everything built, including the 7.3 tree (next build is cold).
distclean:
	rm -rf build
