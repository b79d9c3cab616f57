#!/usr/bin/env bash
# The benchmark command (not a test): for N emulated devices, N in --sizes,
# boot QEMU and live-update them, in both reset modes (parallel, the default,
# and serial: vfio_pci_liveupdate.serial_reset=1) and in keep mode (every
# device VFIO_DEVICE_LIVEUPDATE_KEEP, no reset), --reps times each; then
# summarise every phase (min/median/max) as a Markdown table and plot the
# freeze time against N (SVG).
#
#   scripts/bench.sh [--sizes "1 4 8 16"] [--reps 3] [--device virtio-net-pci]
#                    [--modes "parallel serial keep"] [--pause-reps 3] [--out docs/bench]
#
# Then the DMA pause across the kexec, --pause-reps times (0: none): the
# no-IOMMU demonstration of make run (the sample VMM receiving on three
# virtio-net devices that the host feeds with numbered frames, one in each
# mode: run, keep, reset); per mode the longest gap between the host send
# times of two consecutive frames the device received (vm_report.py's rx.json).
#
# Every QEMU run is a full two-stage run (scripts/vmtest.sh --mode bench) whose
# report must pass; its logs stay under build/logs/runs/. The table goes to
# <out>/results.md and stdout, the plot to <out>/freeze.svg.
set -euo pipefail
LOG_TAG=bench
. "$(dirname "$0")/lib.sh"

SIZES="1 4 8 16"
REPS=3
DEVICE=virtio-net-pci
MODES="parallel serial keep"
PAUSE_REPS=
OUT=$PROJECT/docs/bench
while [ $# -gt 0 ]; do
	case "$1" in
	--sizes) SIZES=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--device) DEVICE=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--pause-reps) PAUSE_REPS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	*) die "unknown argument $1" ;;
	esac
done
mkdir -p "$OUT"

runs=()
t0=$(date +%s)
for n in $SIZES; do
	devices=$(printf "$DEVICE %.0s" $(seq "$n"))
	for mode in $MODES; do
		case "$mode" in
		parallel) append= ;;
		serial) append="vfio_pci_liveupdate.serial_reset=1" ;;
		keep) append="vfio_lu_bench_keep=1" ;;
		*) die "unknown mode $mode (parallel, serial, keep)" ;;
		esac
		for r in $(seq "$REPS"); do
			name=bench-$n-$mode-$r
			log "N=$n $mode, run $r of $REPS"
			ok=1
			"$PROJECT/scripts/vmtest.sh" --mode bench --name "$name" \
				--devices "$devices" --append "$append" > "$BUILD/bench-run.out" 2>&1 || ok=0
			# This run's log directory (build/logs/latest may be someone else's by now).
			rundir=$(sed -n 's/.*, logs: //p' "$BUILD/bench-run.out" | tail -n 1)
			if [ "$ok" = 0 ] || [ ! -d "$rundir" ]; then
				cat "$BUILD/bench-run.out" >&2
				die "benchmark run $name failed (logs: ${rundir:-none})"
			fi
			runs+=("$rundir")
		done
	done
done
pause=()
for r in $(seq "${PAUSE_REPS:-$REPS}"); do
	name=bench-pause-$r
	log "DMA pause (no IOMMU; run, keep and reset devices), run $r of ${PAUSE_REPS:-$REPS}"
	ok=1
	"$PROJECT/scripts/vmtest.sh" --mode demo --lists demorun --noiommu --name "$name" \
		--devices "virtio-net-rx virtio-net-rx virtio-net-rx" > "$BUILD/bench-run.out" 2>&1 || ok=0
	rundir=$(sed -n 's/.*, logs: //p' "$BUILD/bench-run.out" | tail -n 1)
	if [ "$ok" = 0 ] || [ ! -f "$rundir/rx.json" ]; then
		cat "$BUILD/bench-run.out" >&2
		die "benchmark run $name failed (logs: ${rundir:-none})"
	fi
	pause+=(--pause "$rundir")
done
log "$((${#runs[@]} + ${#pause[@]} / 2)) run(s) in $(( $(date +%s) - t0 )) s"
python3 "$PROJECT/scripts/bench.py" --out "$OUT" --device "$DEVICE" "${pause[@]}" "${runs[@]}"
