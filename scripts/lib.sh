# Shared settings for the project's scripts (sourced, not run).
# shellcheck shell=bash

PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${VFIO_LU_BUILD:-$PROJECT/build}
KSRC=$BUILD/linux          # kernel source: pristine 7.3 + patches + overlay (a git tree)
# Which kernel: "release" (make run, make bench; objects in build/obj) or
# "debug" (make test: KASAN, lockdep, kmemleak...; objects in build/obj-debug,
# config fragment config + config.debug). VFIO_LU_KERNEL selects it.
KFLAVOUR=${VFIO_LU_KERNEL:-release}
case "$KFLAVOUR" in
release) KOBJ=$BUILD/obj ;;        # kernel objects (O=)
debug)   KOBJ=$BUILD/obj-debug ;;
*) printf 'VFIO_LU_KERNEL must be release or debug, not %s\n' "$KFLAVOUR" >&2; exit 1 ;;
esac
LOGS=$BUILD/logs
SELFTESTS=$PROJECT/tools/testing/selftests/vfio_pci_liveupdate
FRAGMENTS=("$SELFTESTS/config")
[ "$KFLAVOUR" = debug ] && FRAGMENTS+=("$SELFTESTS/config.debug")
KDIR_DRIVER=drivers/vfio/pci/liveupdate   # where src/, Kbuild, Kconfig land in the tree
JOBS=${JOBS:-$(nproc)}

export PATH="$HOME/.cargo/bin:$PATH"
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}

rust_lib_src() {
	local v
	v=$(rustc --version | awk '{print $2}')
	echo "/usr/src/rustc-$v/library"
}

# CLIPPY=1: every Rust object of the kernel goes through clippy, ours included.
kmake() {
	make -C "$KSRC" O="$KOBJ" LLVM=-19 CLIPPY=1 RUST_LIB_SRC="$(rust_lib_src)" -j"$JOBS" "$@"
}

log()  { printf '[%s] %s\n' "${LOG_TAG:-vfio-lu}" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "${LOG_TAG:-vfio-lu}" "$*" >&2; exit 1; }

# One user of the build directory at a time (a kernel build, a docs or rustdoc
# build), or any number of QEMU runs (shared): waits for the others, released
# when the script exits.
build_lock() {	# [shared]: QEMU runs share the lock, builds take it alone
	local mode=-x
	[ "${1:-}" = shared ] && mode=-s
	mkdir -p "$BUILD"
	exec 9>>"$BUILD/.lock"
	if ! flock -n $mode 9; then
		log "waiting for another build or run in $BUILD to finish"
		flock $mode 9 || die "cannot lock $BUILD/.lock"
	fi
}
