#!/usr/bin/env bash
# The README's test command (after the kernel build): style checks, and, at the
# same time, the two-stage QEMU test twice, once per reset mode of the module
# (parallel, the default, and serial), the second also with bind_preserved=1,
# a third, short run with a damaged list of preserved devices, a fourth
# with the sample VMM in keep mode (frames checked on the host), and a fifth
# without an IOMMU, for the run mode, where the sample VMM receives on a
# device whose DMA goes on through the kexec. Ends with "N passed, N failed"
# over all of them and exits non-zero if anything failed.
set -uo pipefail
LOG_TAG=test
. "$(dirname "$0")/lib.sh"

# Everything runs at the same time: the lint, and the QEMU runs (each
# mostly keeps one core busy; TCG boots are single-threaded). Outputs are
# printed in order once all have finished.
out=$(mktemp -d "${TMPDIR:-/tmp}/vfio-lu-test.XXXXXX")
# shellcheck disable=SC2064
trap "rm -rf '$out'" EXIT

# One QEMU run in the background: name, then vmtest.sh arguments.
vm_start() {
	local name=$1; shift
	{ "$PROJECT/scripts/vmtest.sh" --mode test --name "$name" "$@" > "$out/$name" 2>&1
	  echo $? > "$out/$name.rc"; } &
}
# The first run lets vfio-pci suspend idle devices (as distributions have it):
# the keep test's kept device must stay in D0 across the kexec all the same.
vm_start test --idle-d3 "$@"
# The second run also has the new kernel's module bind the preserved devices
# itself (bind_preserved=1); the first leaves that to init, as userspace.
# It runs only what depends on those parameters (serial1.list, serial2.list),
# without the fault test's devices: the rest runs in the first run only.
vm_start test-serial --lists serial --fault-devices "" --keep-devices "" \
	--append "vfio_pci_liveupdate.serial_reset=1 vfio_pci_liveupdate.bind_preserved=1" "$@"
# The third damages the list of preserved devices across the kexec, which takes
# the hold-off and the reset records from every device of its run: two devices
# of its own and one program (list1.list, list2.list). Before it, its first
# kernel runs programs that need nothing of the other runs' devices or
# parameters (the uAPI test, the stress cases that never freeze, 50 module
# unloads), which would otherwise make the first run the last to end by far.
vm_start test-list --lists list --devices "virtio-net-pci igb" --fault-devices "" --reset-devices "" \
	--keep-devices "" "$@"
# The fourth runs the sample VMM (demotest1.list, demotest2.list): it drives
# two virtio-net devices from userspace and sets a register of two igb; one
# of each is kept across the kexec and sends on from the same queue, the
# other reset; the host checks every frame arrived once.
vm_start test-vmm --mode demo --lists demotest --devices "virtio-net-tx virtio-net-tx igb igb" "$@"
# The fifth has no IOMMU: VFIO's no-IOMMU mode, where a device can keep doing
# DMA through the kexec (the run mode; demoruntest1.list, demoruntest2.list).
# The run mode test on two virtio devices of its own, one in run mode and one
# in keep mode; then the sample VMM receiving on three virtio-net devices the
# host feeds with numbered frames: one kept running through the kexec (RUN:
# its DMA goes on, no frame lost), one kept (KEEP), one reset.
vm_start test-running --mode demo --lists demoruntest --noiommu \
	--devices "virtio-net-rx virtio-net-rx virtio-net-rx" \
	--keep-devices "virtio-rng-pci-bridged virtio-rng-pci" "$@"

# Other kernel configurations must build too (compile only, see the script),
# at the same time as the rest.
{ "$PROJECT/scripts/config-check.sh" > "$out/config" 2>&1; echo $? > "$out/config.rc"; } &
lint_out=$("$PROJECT/scripts/lint.sh"); lint_rc=$?
wait
[ "$(cat "$out/config.rc" 2>/dev/null)" = 0 ] || lint_rc=1
lint_out+=$'\n'$(cat "$out/config")
printf '%s\n' "$lint_out"
lp=$(grep -c '^  ok ' <<< "$lint_out")
lf=$(grep -c '^  FAIL ' <<< "$lint_out")
passed=$lp; failed=$lf; skipped=0
[ "$lint_rc" = 0 ] || [ "$lf" -gt 0 ] || failed=$((failed + 1))

# The result of one QEMU run, by name.
vm_tally() {
	local name=$1 rc vp vf vs
	echo "$name:"
	cat "$out/$name"
	rc=$(cat "$out/$name.rc" 2>/dev/null || echo 1)
	read -r vp vf vs < <(awk '/^vm: [0-9]+ passed, [0-9]+ failed/ {
		s = 0; if (match($0, /[0-9]+ skipped/)) s = substr($0, RSTART) + 0
		print $2, $4, s }' "$out/$name")
	if [ -z "${vp:-}" ]; then
		# The VM run did not even report: count it as one failure.
		vp=0; vf=1; vs=0
	fi
	[ "$rc" = 0 ] || [ "$vf" -gt 0 ] || [ "$vs" -gt 0 ] || vf=1
	passed=$((passed + vp)); failed=$((failed + vf)); skipped=$((skipped + vs))
}
vm_tally test
vm_tally test-serial
vm_tally test-list
vm_tally test-vmm
vm_tally test-running

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ] && [ "$skipped" = 0 ]
