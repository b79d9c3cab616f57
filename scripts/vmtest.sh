#!/usr/bin/env bash
# Build the guest programs and the two nested initramfs images, boot the test
# kernel in QEMU (q35, intel-iommu, one PCIe root port per emulated device),
# let the guest run stage 1, kexec, run stage 2 and power off, then report.
#
#   scripts/vmtest.sh [--mode test|demo|bench] [--devices "virtio-net-pci igb edu"]
#                     [--append "KERNEL ARGS"] [--timeout SECONDS] [--name NAME] [--kvm]
#                     [--lists NAME] [--fault-devices "..."] [--reset-devices "..."]
#                     [--keep-devices "..."] [--idle-d3] [--noiommu]
#
# --mode picks the programs each stage runs: test (the kselftests,
# stage1.list/stage2.list), demo (for make run: the sample VMM,
# samples/vfio_lu_vmm, demo1.list/demo2.list) or bench (bench1.list/
# bench2.list, for scripts/bench.sh); --lists NAME takes NAME1.list and
# NAME2.list instead (test mode: list1/list2, the damaged-list run of make
# test; demo mode: demoreset, the sample VMM in reset mode; demorun, with
# --noiommu and three virtio-net-rx devices, one per live update mode, RUN
# among them). --devices gives
# the devices of the programs (default: virtio-net-pci igb edu; demo mode:
# virtio-net-tx igb edu, so that make run shows the frames the sample VMM
# sends on both sides of the kexec). --append adds kernel command line
# arguments to both kernels, e.g. vfio_pci_liveupdate.serial_reset=1 (init
# passes vfio_pci_liveupdate.* on to the module, as modprobe would).
# --fault-devices, --reset-devices and --keep-devices give the fault, reset
# and keep mode tests' own devices (test mode defaults below; "" for none).
# --idle-d3 lets vfio-pci suspend idle devices in test mode too.
# --noiommu: a guest without the emulated IOMMU (no intel-iommu, no
# iommu_platform=on), VFIO in no-IOMMU mode in both kernels
# (vfio.enable_unsafe_noiommu_mode=1, which init passes on to the vfio
# module): the devices' cdevs are noiommu-vfioN and take physical addresses.
#
# Device types: virtio-net-pci, virtio-rng-pci, virtio-rng-pci-bridged (behind
# a PCIe-to-PCI bridge of its own), virtio-balloon-pci,
# virtio-keyboard-pci, virtio-serial-pci, virtio-serial-pci-x2 (two functions of one device), igb,
# edu, and
# virtio-net-tx: a virtio-net-pci behind the vIOMMU (iommu_platform=on), MAC
# 52:54:00:4c:55:<index>, whose transmit side goes to a unix socket of the
# host (-netdev dgram), where scripts/frames.py records every frame the
# sample VMM sends (frames-<index>.log); the report checks that each sequence
# number the VMM sent arrived once.
# virtio-net-rx: the same, with a receive queue of 1024 entries
# (rx_queue_size), whose receive side the host feeds: scripts/frames.py feed
# sends it a numbered frame every VFIO_LU_RX_INTERVAL seconds (default 0.02,
# 0.5 with the debug kernel) once the sample VMM's READY marker arrives, and
# logs every frame sent and every marker received (feed-<index>.log); the
# report checks what the device received against it (the sample VMM's --rx).
#
# Every run keeps its logs in build/logs/runs/<time>-<name>/: console.log (the
# serial console of both kernels), ktap.log (second serial port: KTAP and
# "# vfio-lu:" status lines only), qemu.cmd and report.txt; build/logs/latest
# points at the newest run. The exit status is 0 only if every check passed.
set -euo pipefail
LOG_TAG=vmtest
. "$(dirname "$0")/lib.sh"

MODE=test
DEVICES=default
# The fault injection test's own devices (test mode): one per case of
# vfio_lu_fault_test, a device type the other tests do not use.
FAULT_DEVICES=default
# The reset outcome test's own devices (test mode): virtio devices whose
# status register shows whether a reset happened; the last is one device with
# two functions behind one root port (one VFIO device set).
RESET_DEVICES=default
# The keep mode test's own devices (test mode): a virtio device type the other
# tests do not use, whose common configuration the test programs and reads
# back across the kexec; the second is reset behind the handler's back (QEMU
# has one balloon at most).
KEEP_DEVICES=default
# The debug kernel boots and runs about 30 times slower under TCG.
TIMEOUT=${VFIO_LU_TIMEOUT:-300}
[ "$KFLAVOUR" = debug ] && TIMEOUT=${VFIO_LU_TIMEOUT:-1500}
NAME=
NOIOMMU=
IDLE_D3=
# The feeder's interval: the receive queue (1024 buffers) must hold every
# frame sent while no VMM runs, the kexec window: about 3 s with the release
# kernel; with the debug kernel 21 to 28 s alone, and 93 to 191 s beside make
# test's four other runs on 2 cores (which filled a ring of 102 s once),
# hence 20 ms (51 frames/s, 20 s of ring) and 500 ms (512 s of ring).
RX_INTERVAL=${VFIO_LU_RX_INTERVAL:-0.02}
[ "$KFLAVOUR" = debug ] && RX_INTERVAL=${VFIO_LU_RX_INTERVAL:-0.5}
APPEND=
LISTS=
# One host thread per VM (thread=single): make test runs three VMs on the
# machine's 2 cores, where multi-threaded TCG gained nothing (two threads do
# about 1.2 times the work of one here) and lost about a fifth of the boot
# time to contention; the guest still has 2 vCPUs, interleaved.
ACCEL="-accel tcg,thread=single -cpu max"
while [ $# -gt 0 ]; do
	case "$1" in
	--mode) MODE=$2; shift 2 ;;
	--devices) DEVICES=$2; shift 2 ;;
	--fault-devices) FAULT_DEVICES=$2; shift 2 ;;
	--reset-devices) RESET_DEVICES=$2; shift 2 ;;
	--keep-devices) KEEP_DEVICES=$2; shift 2 ;;
	--idle-d3) IDLE_D3=1; shift ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--name) NAME=$2; shift 2 ;;
	--append) APPEND=$2; shift 2 ;;
	--lists) LISTS=$2; shift 2 ;;
	--kvm) ACCEL="-accel kvm -cpu host"; shift ;;
	--noiommu) NOIOMMU=1; shift ;;
	*) die "unknown argument $1" ;;
	esac
done
NAME=${NAME:-$MODE}
if [ "$DEVICES" = default ]; then
	DEVICES="virtio-net-pci igb edu"
	[ "$MODE" = demo ] && DEVICES="virtio-net-tx igb edu"
fi
if [ "$FAULT_DEVICES" = default ]; then
	FAULT_DEVICES=
	[ "$MODE" = test ] && FAULT_DEVICES=$(printf 'virtio-rng-pci %.0s' 1 2 3 4 5 6 7 8)
fi
if [ "$RESET_DEVICES" = default ]; then
	RESET_DEVICES=
	[ "$MODE" = test ] && RESET_DEVICES="virtio-serial-pci virtio-serial-pci virtio-serial-pci virtio-serial-pci virtio-serial-pci-x2"
fi
if [ "$KEEP_DEVICES" = default ]; then
	KEEP_DEVICES=
	[ "$MODE" = test ] && KEEP_DEVICES="virtio-balloon-pci virtio-keyboard-pci"
fi
# Runs may go on at the same time (make test starts its three together); a
# kernel build waits for them, and they for it.
build_lock shared

[ -f "$KOBJ/arch/x86/boot/bzImage" ] || die "no kernel: run scripts/kernel.sh first"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/setup.sh"

GUEST=$BUILD/guest
RUN=$LOGS/runs/$(date +%Y%m%d-%H%M%S)-$NAME
mkdir -p "$GUEST/bin" "$RUN"
ln -sfn "$RUN" "$LOGS/latest"
# The unix sockets of virtio-net-tx devices: in the run directory, unless its
# path leaves no room for a socket name in sun_path (108 bytes, NUL included).
SOCKS=$RUN
if [ $((${#RUN} + 10)) -gt 107 ]; then
	SOCKS=$(mktemp -d /tmp/vfio-lu.XXXXXX)
fi
FRAMES_PID=
FEED_PID=
cleanup() {
	[ -z "$FRAMES_PID" ] || kill "$FRAMES_PID" 2>/dev/null || true
	[ -z "$FEED_PID" ] || kill "$FEED_PID" 2>/dev/null || true
	[ "$SOCKS" = "$RUN" ] || rm -rf "$SOCKS"
}
trap cleanup EXIT

# --- guest programs (static, glibc) -----------------------------------------
# Built by the selftests' Makefile (lib.mk, on the kernel's libvfio and
# libliveupdate); make rebuilds what changed. One run at a time builds them
# (lock 8); each run then packs its own copy.
exec 8>>"$GUEST/.lock"
flock 8
make -s -C "$SELFTESTS" top_srcdir="$KSRC" KHDR_INCLUDES="-isystem $KOBJ/usr/include" \
	OUTPUT="$GUEST/build" USERLDFLAGS=-static -j"$JOBS" >&2 ||
	die "building the guest programs failed"
# The programs (executables of the build directory) are what the images take.
rm -f "$GUEST"/bin/*
find "$GUEST/build" -maxdepth 1 -type f -perm -u+x -exec cp -p {} "$GUEST/bin/" \;
[ -x "$GUEST/bin/init" ] || die "no guest init built"
mkdir -p "$RUN/bin"
cp -p "$GUEST"/bin/* "$RUN/bin/"
flock -u 8

# --- the sample VMM (demo mode): Rust, static; cargo rebuilds what changed ----
SAMPLE_BIN=
if [ "$MODE" = demo ]; then
	# cargo reads the sample's .cargo/config.toml (static, target) from its cwd.
	(cd "$PROJECT/samples/vfio_lu_vmm" &&
	 CARGO_TARGET_DIR=$BUILD/sample cargo build --release --locked --quiet -j"$JOBS") ||
		die "building the sample VMM (samples/vfio_lu_vmm) failed"
	SAMPLE_BIN=$BUILD/sample/x86_64-unknown-linux-gnu/release/vfio_lu_vmm
fi

# --- initramfs images ----------------------------------------------------------
MODULE=$KOBJ/$KDIR_DRIVER/vfio_pci_liveupdate.ko
[ -f "$MODULE" ] || die "$MODULE missing"
# The modules ours needs, with their own dependencies first, and vfio-pci (which
# binds the devices): with VFIO built as modules, as distributions build it,
# VFIO, vfio-pci-core, vfio-pci, VFIO's type1 IOMMU backend and what they use. Init loads them in this
# order (/lib/modules/load), each with its parameters from the command line.
declare -A KO_PATH=()
while read -r o; do
	n=$(basename "$o" .o); KO_PATH[${n//-/_}]=$KOBJ/${o%.o}.ko
done < "$KOBJ/modules.order"
LOAD_ORDER=()
add_module() {	# $1 = module name; a built-in one is skipped
	local n=${1//-/_} d
	[ -n "${KO_PATH[$n]:-}" ] || return 0
	[[ " ${LOAD_ORDER[*]} " != *" $n "* ]] || return 0
	[ -f "${KO_PATH[$n]}" ] || die "${KO_PATH[$n]} missing"
	for d in $(tr '\0' '\n' < "${KO_PATH[$n]}" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$d"
	done
	LOAD_ORDER+=("$n")
}
add_module vfio_pci
# The type1 IOMMU backend of VFIO containers (the group tests), which modprobe
# would load on a distribution's kernel when a container asks for it.
add_module vfio_iommu_type1
add_module vfio_pci_liveupdate
case "$MODE" in
test) LISTS=${LISTS:-stage} ;;
demo) LISTS=${LISTS:-demo} ;;
bench) LISTS=${LISTS:-bench} ;;
*) die "unknown mode '$MODE' (test, demo or bench)" ;;
esac
cpio_list() {	# $1 = stage of the image
	cat <<LIST
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /tmp 01777 0 0
dir /lib 0755 0 0
dir /lib/modules 0755 0 0
dir /tests 0755 0 0
file /init $RUN/bin/init 0755 0 0
file /lib/modules/load $RUN/modules.load 0644 0 0
file /tests/stage1 $SELFTESTS/${LISTS}1.list 0644 0 0
file /tests/stage2 $SELFTESTS/${LISTS}2.list 0644 0 0
LIST
	for m in "${LOAD_ORDER[@]}"; do echo "file /lib/modules/$m.ko ${KO_PATH[$m]} 0644 0 0"; done
	for b in "$RUN"/bin/*; do
		[ "$(basename "$b")" = init ] || echo "file /tests/$(basename "$b") $b 0755 0 0"
	done
	[ -z "$SAMPLE_BIN" ] || echo "file /tests/vfio_lu_vmm $SAMPLE_BIN 0755 0 0"
	if [ "$1" = 1 ]; then
		echo "file /kernel $KOBJ/arch/x86/boot/bzImage 0644 0 0"
		echo "file /initrd.img $RUN/initrd-stage2.cpio 0644 0 0"
	fi
}
printf '%s\n' "${LOAD_ORDER[@]}" > "$RUN/modules.load"
cpio_list 2 > "$RUN/stage2.list"
"$KOBJ/usr/gen_init_cpio" "$RUN/stage2.list" > "$RUN/initrd-stage2.cpio"
cpio_list 1 > "$RUN/stage1.list"
"$KOBJ/usr/gen_init_cpio" "$RUN/stage1.list" > "$RUN/initrd-stage1.cpio"

# --- QEMU ----------------------------------------------------------------------
# intel-iommu must come before the devices it translates for. No ACPI hotplug
# of the root ports: its AML, evaluated for every port at enumeration, made up
# most of each boot of the debug kernel (about 2.5 s per port under TCG); the
# kernel has no PCI hotplug driver anyway.
qemu=(qemu-system-x86_64 -M q35,kernel-irqchip=split $ACCEL -smp 2 -m 2G
      -nodefaults -nographic -no-reboot
      -global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off)
# --noiommu: no IOMMU at all, and VFIO in its no-IOMMU mode (both kernels).
# Behind the emulated IOMMU, DMA is translated (iommu_platform=on: the
# virtio-net-tx/-rx devices go through it); without it, it is not.
IOMMU_PLATFORM=,iommu_platform=on
if [ -z "$NOIOMMU" ]; then
	qemu+=(-device "intel-iommu,intremap=on,caching-mode=on")
else
	IOMMU_PLATFORM=
fi
ids=()
fault_ids=()
reset_ids=()
keep_ids=()
tx_devs=()	# indexes of the virtio-net-tx devices
rx_devs=()	# indexes of the virtio-net-rx devices
i=0
add_device() {	# $1 = type; the vendor:device goes to the array named $2
	local -n out=$2
	i=$((i + 1))
	qemu+=(-device "pcie-root-port,id=rp$i,chassis=$i,slot=$i")
	case "$1" in
	virtio-net-pci) qemu+=(-netdev "user,id=n$i,restrict=on" -device "virtio-net-pci,netdev=n$i,bus=rp$i"); out+=(1af4:1041) ;;
	virtio-net-tx)	# frames to the host's scripts/frames.py, DMA through the vIOMMU
		qemu+=(-netdev "dgram,id=n$i,local.type=unix,local.path=$SOCKS/q$i.sock,remote.type=unix,remote.path=$SOCKS/h$i.sock"
		       -device "virtio-net-pci,netdev=n$i,bus=rp$i$IOMMU_PLATFORM,mac=52:54:00:4c:55:$(printf %02x "$i")")
		out+=(1af4:1041); tx_devs+=("$i") ;;
	virtio-net-rx)	# fed by the host's scripts/frames.py feed; markers back to it
		qemu+=(-netdev "dgram,id=n$i,local.type=unix,local.path=$SOCKS/q$i.sock,remote.type=unix,remote.path=$SOCKS/h$i.sock"
		       -device "virtio-net-pci,netdev=n$i,bus=rp$i$IOMMU_PLATFORM,rx_queue_size=1024,mac=52:54:00:4c:55:$(printf %02x "$i")")
		out+=(1af4:1041); rx_devs+=("$i") ;;
	virtio-rng-pci) qemu+=(-device "virtio-rng-pci,bus=rp$i"); out+=(1af4:1044) ;;
	virtio-rng-pci-bridged)	# behind a PCIe-to-PCI bridge, which no driver binds:
		# its Command register stays as the kexec left it (the port driver
		# sets Bus Master on root ports)
		qemu+=(-device "pcie-pci-bridge,id=pb$i,bus=rp$i"
		       -device "virtio-rng-pci,bus=pb$i,addr=1.0,disable-legacy=on"); out+=(1af4:1044) ;;
	virtio-balloon-pci) qemu+=(-device "virtio-balloon-pci,bus=rp$i"); out+=(1af4:1045) ;;
	virtio-keyboard-pci) qemu+=(-device "virtio-keyboard-pci,bus=rp$i"); out+=(1af4:1052) ;;
	virtio-serial-pci) qemu+=(-device "virtio-serial-pci,bus=rp$i"); out+=(1af4:1043) ;;
	virtio-serial-pci-x2)	# two functions of one device
		qemu+=(-device "virtio-serial-pci,bus=rp$i,addr=0.0,multifunction=on"
		       -device "virtio-serial-pci,bus=rp$i,addr=0.1"); out+=(1af4:1043) ;;
	igb)            qemu+=(-netdev "user,id=n$i,restrict=on" -device "igb,netdev=n$i,bus=rp$i"); out+=(8086:10c9) ;;
	edu)            qemu+=(-device "edu,bus=rp$i"); out+=(1234:11e8) ;;
	*) die "unknown device type '$1' (known: virtio-net-pci virtio-net-tx virtio-net-rx virtio-rng-pci virtio-rng-pci-bridged virtio-balloon-pci virtio-keyboard-pci virtio-serial-pci virtio-serial-pci-x2 igb edu)" ;;
	esac
}
for dev in $DEVICES; do add_device "$dev" ids; done
for dev in $FAULT_DEVICES; do add_device "$dev" fault_ids; done
for dev in $RESET_DEVICES; do add_device "$dev" reset_ids; done
for dev in $KEEP_DEVICES; do add_device "$dev" keep_ids; done
iommu_arg="intel_iommu=on"
[ -z "$NOIOMMU" ] || iommu_arg="vfio.enable_unsafe_noiommu_mode=1"
cmdline="console=ttyS0 $iommu_arg liveupdate=on panic=-1 vfio_lu_stage=1 vfio_lu_devs=$(IFS=,; echo "${ids[*]}")"
[ ${#fault_ids[@]} = 0 ] || cmdline+=" vfio_lu_fault_devs=$(IFS=,; echo "${fault_ids[*]}")"
[ ${#reset_ids[@]} = 0 ] || cmdline+=" vfio_lu_reset_devs=$(IFS=,; echo "${reset_ids[*]}")"
[ ${#keep_ids[@]} = 0 ] || cmdline+=" vfio_lu_keep_devs=$(IFS=,; echo "${keep_ids[*]}")"
# Tests read device registers before anyone opens a device: vfio-pci must not
# put idle devices in D3hot (QEMU's virtio devices reset on the way back to
# D0, which would hide whether our reset happened). Devices held off for a
# live update stay in D0 anyway; --idle-d3 leaves vfio-pci's default, for a
# run whose tests check that.
[ "$MODE" = test ] && [ -z "$IDLE_D3" ] && cmdline+=" vfio_pci.disable_idle_d3=1"
# KHO's default scratch size (twice the memblock reservations) does not fit in
# 2 GiB with KASAN's shadow reserved: ask for sizes that hold the next
# kernel's early allocations, shadow included.
# no5lvl: with 5-level paging (-cpu max has LA57), KASAN reports a
# wild-memory-access in rcu_is_watching() from an interrupt that lands in
# identify_cpu() during early boot, in 7.3 code that is not ours.
[ "$KFLAVOUR" = debug ] && cmdline+=" kho_scratch=64M,512M,64M no5lvl"
# The module's tracepoints (phase timings) are printed on the console, where
# the report and the benchmark read them: init enables them once the module
# is loaded; tp_printk makes the kernel print what they record.
cmdline+=" tp_printk"
# no_timer_check: at boot, check_timer() spins for 40e9/HZ TSC cycles and then
# wants more than 4 PIT ticks, or it panics with "timer doesn't work through
# Interrupt-remapped IO-APIC". Under TCG on a loaded 2-core host the QEMU
# thread that delivers the PIT ticks can lag that long (CI saw it once, in a
# run beside two others). KVM guests skip the check for the same reason.
cmdline+=" no_timer_check"
cmdline+="${APPEND:+ $APPEND}"
qemu+=(-serial "file:$RUN/console.log" -serial "file:$RUN/ktap.log"
       -kernel "$KOBJ/arch/x86/boot/bzImage" -initrd "$RUN/initrd-stage1.cpio"
       -append "$cmdline")
printf '%q ' "${qemu[@]}" > "$RUN/qemu.cmd"; echo >> "$RUN/qemu.cmd"

log "booting QEMU ($i device(s): $DEVICES${FAULT_DEVICES:+, for the fault test: $FAULT_DEVICES}${RESET_DEVICES:+, for the reset test: $RESET_DEVICES}${KEEP_DEVICES:+, for the keep test: $KEEP_DEVICES}), timeout ${TIMEOUT}s, logs: $RUN"
# A guest that prints nothing on either serial port for this long is taken as
# stalled: the longest quiet stretch of a healthy debug run is well under a minute.
STALL=${VFIO_LU_STALL:-300}
# Runs QEMU; kills it when the guest is silent for $STALL s (exit status 125,
# and the file stalled says since when), or after $TIMEOUT s (124).
run_qemu() {
	local pid last=0 size quiet=0 rc
	rm -f "$RUN/stalled"
	timeout --kill-after=10 "$TIMEOUT" "${qemu[@]}" < /dev/null > "$RUN/qemu.out" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		size=$(cat "$RUN/console.log" "$RUN/ktap.log" 2>/dev/null | wc -c)
		if [ "$size" != "$last" ]; then
			last=$size; quiet=0
		else
			quiet=$((quiet + 5))
		fi
		if [ "$quiet" -ge "$STALL" ]; then
			echo "no output on either serial port for ${STALL} s (last: $(tail -n 1 "$RUN/console.log" | cut -c1-120))" > "$RUN/stalled"
			pkill -KILL -P "$pid" 2>/dev/null || true
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null
			return 125
		fi
	done
	wait "$pid"; rc=$?
	return "$rc"
}
# The host's receiver of the virtio-net-tx devices' frames: bound before QEMU
# starts (QEMU drops a frame it cannot deliver), stopped once QEMU has exited,
# after it has read what is still queued.
start_frames() {
	local d args=()
	[ ${#tx_devs[@]} -gt 0 ] || return 0
	rm -f "$RUN/frames.ready" "$RUN/frames.stop" "$RUN"/frames-*.log
	for d in "${tx_devs[@]}"; do
		rm -f "$SOCKS/q$d.sock"
		: > "$RUN/frames-$d.log"
		args+=("$RUN/frames-$d.log=$SOCKS/h$d.sock")
	done
	python3 "$PROJECT/scripts/frames.py" recv --ready "$RUN/frames.ready" \
		--stop "$RUN/frames.stop" "${args[@]}" &
	FRAMES_PID=$!
	wait_ready "$RUN/frames.ready" "$FRAMES_PID" || \
		die "the frame receiver (scripts/frames.py) did not bind its sockets in $SOCKS"
}
# Waits up to 10 s for file $1, which process $2 writes once its sockets are
# bound; fails if the process ends first or the time runs out.
wait_ready() {
	for _ in $(seq 100); do
		[ -e "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# The feeder of the virtio-net-rx devices' receive side: bound before QEMU
# starts (it sends from its own socket to QEMU's, once the device's READY
# marker arrives), stopped once QEMU has exited.
start_feed() {
	local d args=()
	[ ${#rx_devs[@]} -gt 0 ] || return 0
	rm -f "$RUN/feed.ready" "$RUN/feed.stop" "$RUN"/feed-*.log
	for d in "${rx_devs[@]}"; do
		rm -f "$SOCKS/q$d.sock"
		: > "$RUN/feed-$d.log"
		args+=("$RUN/feed-$d.log=$SOCKS/h$d.sock=$SOCKS/q$d.sock")
	done
	python3 "$PROJECT/scripts/frames.py" feed --ready "$RUN/feed.ready" \
		--stop "$RUN/feed.stop" --interval "$RX_INTERVAL" "${args[@]}" &
	FEED_PID=$!
	wait_ready "$RUN/feed.ready" "$FEED_PID" || \
		die "the frame feeder (scripts/frames.py feed) did not bind its sockets in $SOCKS"
}
stop_feed() {
	local d
	[ -n "$FEED_PID" ] || return 0
	touch "$RUN/feed.stop"
	wait "$FEED_PID" || log "the frame feeder exited with status $?"
	FEED_PID=
	for d in "${rx_devs[@]}"; do rm -f "$SOCKS/q$d.sock"; done
	rm -f "$RUN/feed.ready" "$RUN/feed.stop"
}
stop_frames() {
	local d
	[ -n "$FRAMES_PID" ] || return 0
	touch "$RUN/frames.stop"
	wait "$FRAMES_PID" || log "the frame receiver exited with status $?"
	FRAMES_PID=
	for d in "${tx_devs[@]}"; do rm -f "$SOCKS/q$d.sock"; done
	rm -f "$RUN/frames.ready" "$RUN/frames.stop"
}
for attempt in 1 2; do
	start_frames
	start_feed
	t0=$(date +%s.%N)
	set +e
	run_qemu
	qrc=$?
	set -e
	t1=$(date +%s.%N)
	stop_frames
	stop_feed
	# A whole VM that stops printing (seen once in about 100 runs of three at
	# once: the new kernel silent in the middle of PCI enumeration, no RCU
	# stall or lockup report, QEMU busy on one core) is QEMU's stall, not a
	# verdict on the guest: run once more, keep the stalled run's logs, and
	# say so. A guest that hangs for a reason of its own hangs again.
	if [ "$attempt" = 1 ] && [ "$qrc" = 125 ]; then
		mkdir -p "$RUN/qemu-stalled"
		mv "$RUN/console.log" "$RUN/ktap.log" "$RUN/qemu.out" "$RUN/stalled" "$RUN"/frames-*.log "$RUN"/feed-*.log "$RUN/qemu-stalled/" 2>/dev/null || true
		echo "stalled: $(cat "$RUN/qemu-stalled/stalled")" > "$RUN/qemu-retried"
		log "the guest printed nothing for ${STALL} s; running it again (the stalled run's logs: $RUN/qemu-stalled)"
		continue
	fi
	# QEMU 10.0's TCG sometimes aborts on an assertion of its own
	# (iotlb_to_section, when vfio-pci turns BARs off at a close while the
	# other vCPU runs; seen in about 1 run of 20 with 4 devices or more).
	# That is QEMU's failure, not the guest's: run once more, keep the
	# aborted run's logs, and say so (qemu-retried, read by the report).
	if [ "$attempt" = 1 ] && [ "$qrc" = 134 ] && grep -q "Assertion" "$RUN/qemu.out"; then
		mkdir -p "$RUN/qemu-aborted"
		mv "$RUN/console.log" "$RUN/ktap.log" "$RUN/qemu.out" "$RUN"/frames-*.log "$RUN"/feed-*.log "$RUN/qemu-aborted/" 2>/dev/null || true
		grep -m1 "Assertion" "$RUN/qemu-aborted/qemu.out" | sed 's/^qemu-system-x86_64: //' > "$RUN/qemu-retried"
		log "QEMU aborted on an assertion of its own ($(cat "$RUN/qemu-retried")); running it again"
		continue
	fi
	break
done
echo "$qrc" > "$RUN/qemu.rc"
# What the host received from each virtio-net-tx device; the report checks it
# against what the sample VMM says it sent.
if [ ${#tx_devs[@]} -gt 0 ]; then
	logs=()
	for d in "${tx_devs[@]}"; do logs+=("$RUN/frames-$d.log"); done
	python3 "$PROJECT/scripts/frames.py" summary "${logs[@]}" > "$RUN/frames.txt" || true
	while read -r l; do log "$l"; done < "$RUN/frames.txt"
fi
if [ ${#rx_devs[@]} -gt 0 ]; then
	logs=()
	for d in "${rx_devs[@]}"; do logs+=("$RUN/feed-$d.log"); done
	python3 "$PROJECT/scripts/frames.py" feedsummary "${logs[@]}" > "$RUN/feed.txt" || true
	while read -r l; do log "$l"; done < "$RUN/feed.txt"
fi
# The images and programs are the build's, not the run's record.
rm -rf "$RUN/bin" "$RUN"/initrd-stage*.cpio
python3 "$PROJECT/scripts/vm_report.py" --mode "$MODE" --qemu-rc "$qrc" \
	--wall "$(echo "$t1 - $t0" | bc)" --devices "$DEVICES" "$RUN" | tee "$RUN/report.txt"
exit "${PIPESTATUS[0]}"
