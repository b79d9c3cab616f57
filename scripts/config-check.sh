#!/usr/bin/env bash
# Build checks of kernel configurations other than the test kernel's, compile
# only: the kernel crate (rust/, with our additions) and VFIO (drivers/vfio/,
# with our C patches) must build in them. The test kernel itself builds VFIO,
# vfio-pci-core and vfio-pci as modules, as distributions do, and links, so
# the kernel crate refers to no module's symbol; here:
#
#   vfio-y-nocdev   RUST=y VFIO=y VFIO_PCI=y, VFIO_DEVICE_CDEV=n, no driver
#                   (the default of VFIO_DEVICE_CDEV, with VFIO built in)
#   driver-nofault  the test configuration without fault injection: the
#                   driver as a distribution builds it, free of warnings
#
#   scripts/config-check.sh [NAME...]
#
# Each configuration builds in build/obj-<NAME>/ from build/linux (the tree
# that scripts/kernel.sh prepared), so a second run rebuilds only what changed.
# Prints "  ok    config   ..." / "  FAIL  config   ..." lines; exit 1 if any
# failed.
set -uo pipefail
LOG_TAG=config
. "$(dirname "$0")/lib.sh"

# name -> the lines that change the test kernel's fragment
declare -A CHANGES=(
	[vfio-y-nocdev]="CONFIG_VFIO=y
CONFIG_VFIO_PCI_CORE=y
CONFIG_VFIO_PCI=y
# CONFIG_VFIO_DEVICE_CDEV is not set
# CONFIG_VFIO_PCI_LIVEUPDATE is not set"
	# The driver as a distribution builds it: without the test kernels' fault
	# injection (make run's and make bench's kernel is the other place that
	# builds it so).
	[driver-nofault]="# CONFIG_VFIO_PCI_LIVEUPDATE_FAULT_INJECT is not set"
)

[ -f "$KSRC/Makefile" ] || die "no kernel tree in $KSRC: run scripts/kernel.sh first"
# Reads build/linux, as the QEMU runs read the kernel: shares the lock with them.
build_lock shared

fail=0
for name in "${@:-${!CHANGES[@]}}"; do
	changes=${CHANGES[$name]:-}
	[ -n "$changes" ] || die "unknown configuration '$name' (known: ${!CHANGES[*]})"
	obj=$BUILD/obj-$name
	mkdir -p "$obj"
	t0=$(date +%s)
	# The test fragment, then the changes (the last line of an option wins).
	frag=$(cat "$SELFTESTS/config"; printf '%s\n' "$changes")
	want=$(printf '%s' "$frag" | cat - "$PROJECT/Kconfig" "$KSRC/.git/vfio-lu-patches" | sha256sum | cut -d' ' -f1)
	k() { make -C "$KSRC" O="$obj" LLVM=-19 RUST_LIB_SRC="$(rust_lib_src)" -j"$JOBS" "$@"; }
	bad=0
	if [ "$want" != "$(cat "$obj/.vfio-lu-config" 2>/dev/null)" ]; then
		printf '%s\n' "$frag" | grep -E '^(CONFIG_|# CONFIG_.* is not set)' > "$obj/.config"
		if k -s olddefconfig > "$obj/kconfig.log" 2>&1; then
			echo "$want" > "$obj/.vfio-lu-config"
		else
			echo "        olddefconfig failed (see $obj/kconfig.log)"; bad=1
		fi
	fi
	while read -r line; do
		case "$line" in
		"# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}
			! grep -q "^$opt=[ym]" "$obj/.config" || { echo "        $opt is set"; bad=1; } ;;
		CONFIG_*) grep -qxF "$line" "$obj/.config" || { echo "        $line did not stick"; bad=1; } ;;
		esac
	done <<< "$changes"
	# A warning in our code (the driver, the kernel crate's new modules) fails
	# the check as it fails the kernel build.
	ours='drivers/vfio/pci/liveupdate/|rust/kernel/(liveupdate|kho|reboot|pci/state)\.rs'
	if [ "$bad" = 0 ] && k rust/ drivers/vfio/ > "$obj/build.log" 2>&1 &&
	   ! grep -A3 '^warning' "$obj/build.log" | grep -qE "$ours"; then
		echo "  ok    config   $name: rust/ and drivers/vfio/ build ($(( $(date +%s) - t0 )) s)"
	else
		echo "  FAIL  config   $name: rust/ and drivers/vfio/ do not build (see $obj/build.log)"
		grep -E -A3 '^(warning|error)|Error' "$obj/build.log" | head -20 | sed 's/^/        /'
		fail=1
	fi
done
exit $fail
