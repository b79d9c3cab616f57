#!/usr/bin/env bash
# Prepare the Linux 7.3 tree with the project applied onto it, configure it and
# build it. Incremental: only what changed since the last run is copied, and
# only what depends on it is rebuilt.
#
#   1. unpack /usr/src/linux-source-7.3.tar.xz once into $BUILD/linux and make
#      it a git tree whose first commit is the pristine source;
#   2. apply patches/*.patch (git am) when the series changed;
#   3. copy the overlay (rust/, include/, and src/ + Kbuild + Kconfig into
#      drivers/vfio/pci/liveupdate/) by content, so unchanged files keep their
#      timestamps;
#   4. merge the config fragment with olddefconfig when it changed, and check
#      that every requested option is really set;
#   5. make bzImage modules headers_install.
set -euo pipefail
LOG_TAG=kernel
. "$(dirname "$0")/lib.sh"
mkdir -p "$BUILD" "$LOGS" "$KOBJ"
build_lock

TARBALL=/usr/src/linux-source-7.3.tar.xz
[ -f "$TARBALL" ] || die "$TARBALL missing: run scripts/setup.sh (package linux-source-7.3)"

git_k() { git -C "$KSRC" -c user.name=vfio-lu -c user.email=vfio-lu@localhost "$@"; }

# --- 1. pristine tree --------------------------------------------------------
if [ ! -f "$KSRC/.git/vfio-lu-pristine" ]; then
	log "unpacking $TARBALL into $KSRC"
	rm -rf "$KSRC" "$BUILD/linux-source-7.3"
	tar xf "$TARBALL" -C "$BUILD"
	mv "$BUILD/linux-source-7.3" "$KSRC"
	log "recording the pristine tree in git (once)"
	git_k init -q
	git_k add -A -f
	git_k commit -q -m "Linux $(make -s -C "$KSRC" kernelversion) (Debian linux-source-7.3), pristine"
	git_k tag pristine
	touch "$KSRC/.git/vfio-lu-pristine"
fi

# --- 2. patches ----------------------------------------------------------------
shopt -s nullglob
patches=("$PROJECT"/patches/*.patch)
want=$(cat /dev/null "${patches[@]}" | sha256sum | cut -d' ' -f1)
have=$(cat "$KSRC/.git/vfio-lu-patches" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
	log "applying ${#patches[@]} patch(es) from patches/"
	git_k am --abort >/dev/null 2>&1 || true
	git_k reset -q --hard pristine
	git_k clean -q -fdx
	rm -f "$BUILD/overlay.list"
	for p in "${patches[@]}"; do
		git_k am -q --keep-cr "$p" || die "patch $(basename "$p") does not apply to the pristine tree"
	done
	echo "$want" > "$KSRC/.git/vfio-lu-patches"
fi

# --- 3. overlay ---------------------------------------------------------------
# List "source<TAB>destination" for every overlay file.
overlay_list() {
	(cd "$PROJECT" && for d in rust include Documentation; do
		[ -d "$d" ] && find "$d" -type f | sort | awk -v OFS='\t' '{print $0, $0}'
	done
	for f in Kbuild Kconfig; do
		[ -f "$f" ] && printf '%s\t%s/%s\n' "$f" "$KDIR_DRIVER" "$f"
	done
	[ -d src ] && find src -type f | sort | awk -v OFS='\t' -v d="$KDIR_DRIVER" \
		'{ p = $0; sub(/^src\//, "", p); print $0, d "/" p }') || true
}
new_list=$(overlay_list)
copied=0
while IFS=$'\t' read -r s d; do
	[ -n "$s" ] || continue
	if ! cmp -s "$PROJECT/$s" "$KSRC/$d"; then
		mkdir -p "$(dirname "$KSRC/$d")"
		cp "$PROJECT/$s" "$KSRC/$d"
		copied=$((copied + 1))
	fi
done <<< "$new_list"
# Files that left the overlay: restore the pristine+patched version, or remove.
if [ -f "$BUILD/overlay.list" ]; then
	comm -23 <(cut -f2 "$BUILD/overlay.list" | sort) <(cut -f2 <<< "$new_list" | sort) |
	while read -r d; do
		[ -n "$d" ] || continue
		if git_k cat-file -e "HEAD:$d" 2>/dev/null; then
			git_k checkout -q HEAD -- "$d"
		else
			rm -f "$KSRC/$d"
		fi
		log "removed from overlay: $d"
	done
fi
printf '%s\n' "$new_list" > "$BUILD/overlay.list"
log "overlay: $copied file(s) updated"

# --- 4. config ----------------------------------------------------------------
# Re-run olddefconfig when a fragment, our Kconfig or the patches changed.
want=$(cat "${FRAGMENTS[@]}" "$PROJECT/Kconfig" "$KSRC/.git/vfio-lu-patches" | sha256sum | cut -d' ' -f1)
have=$(cat "$KOBJ/.vfio-lu-config" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -f "$KOBJ/.config" ]; then
	log "configuring the $KFLAVOUR kernel from $(for f in "${FRAGMENTS[@]}"; do realpath --relative-to="$PROJECT" "$f"; done | paste -sd' ')"
	cat "${FRAGMENTS[@]}" | grep -E '^(CONFIG_|# CONFIG_.* is not set)' > "$KOBJ/.config"
	kmake -s olddefconfig > "$LOGS/kconfig.log" 2>&1 || { cat "$LOGS/kconfig.log"; die "olddefconfig failed"; }
	echo "$want" > "$KOBJ/.vfio-lu-config"
fi
# Every requested option must have survived olddefconfig (a missing dependency
# drops an option silently).
bad=0
while read -r line; do
	case "$line" in
	CONFIG_*=n|"# CONFIG_"*" is not set")
		opt=${line%%=*}; opt=${opt#\# }; opt=${opt%% *}
		if grep -q "^$opt=[ym]" "$KOBJ/.config"; then log "config: $opt is set but was asked off"; bad=1; fi ;;
	CONFIG_*)
		grep -qxF "$line" "$KOBJ/.config" || { log "config: requested '$line' but got '$(grep -E "^(# )?${line%%=*}[= ]" "$KOBJ/.config" || echo unset)'"; bad=1; } ;;
	esac
done < <(cat "${FRAGMENTS[@]}" | grep -E '^(CONFIG_|# CONFIG_)')
[ "$bad" = 0 ] || die "kernel config is missing requested options (see above)"

# --- 5. build -----------------------------------------------------------------
rustavail=$(kmake -s rustavailable 2>&1) || die "Rust is not available for the kernel build: $rustavail"
log "building the $KFLAVOUR kernel: bzImage + modules (-j$JOBS) in $(basename "$KOBJ"), log: $LOGS/kbuild.log"
t0=$(date +%s)
if ! kmake bzImage modules > "$LOGS/kbuild.log" 2>&1; then
	grep -E 'error|Error' "$LOGS/kbuild.log" | head -40 >&2
	die "kernel build failed (see $LOGS/kbuild.log)"
fi
kmake -s headers_install >> "$LOGS/kbuild.log" 2>&1 || die "headers_install failed"
# Our code builds without warnings (rustc, clippy, C): a warning that names a
# file of the project fails the build step.
ours='drivers/vfio/pci/liveupdate/|include/linux/kho/abi/vfio_pci|rust/kernel/(liveupdate|kho|vfio|reboot|pci/state)|rust/helpers/(kho|pci_state)|drivers/vfio/(vfio_main|device_cdev)\.c|drivers/vfio/pci/vfio_pci_(core|config)\.c|kernel/liveupdate/luo_(core|file)\.c'
if grep -B2 -A6 -E '^(warning|error)(\[|:)' "$LOGS/kbuild.log" | grep -qE -- "--> .*($ours)" ||
   grep -qE "($ours).*: warning:" "$LOGS/kbuild.log"; then
	grep -B2 -A12 -E '^(warning|error)(\[|:)|: warning:' "$LOGS/kbuild.log" | head -60 >&2
	die "warnings in the project's code (see $LOGS/kbuild.log)"
fi
t1=$(date +%s)
n=$(grep -cE '^\s+(CC|RUSTC|AS|CC \[M\]|RUSTC \[M\]|RUSTC L|BINDGEN|LD|LD \[M\])\s' "$LOGS/kbuild.log" || true)
log "kernel build done in $((t1 - t0)) s; $n object(s) (re)built"
grep -q '^CONFIG_VFIO_PCI_LIVEUPDATE=m' "$KOBJ/.config" &&
	{ [ -f "$KOBJ/$KDIR_DRIVER/vfio_pci_liveupdate.ko" ] || die "vfio_pci_liveupdate.ko was not built"; }
echo "$((t1 - t0)) $n" > "$BUILD/last-build"
