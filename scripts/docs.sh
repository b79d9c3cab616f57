#!/usr/bin/env bash
# Render the project's documentation with the kernel's own docs build, and the
# kernel crate's rustdoc; fail on any warning about our pages or our items.
#
#   1. a Python venv with Sphinx from PyPI in $BUILD/docs-venv, made once (the
#      newest Sphinx that Linux 7.3's tools/docs/test_doc_build.py tests);
#   2. under the build lock: copy Documentation/ into the kernel tree, by
#      content (scripts/kernel.sh does the same as part of the overlay);
#   3. make htmldocs SPHINXDIRS=driver-api/vfio-pci-liveupdate, with its own
#      objects in $BUILD/docs-obj and the HTML in $BUILD/docs/html (kernel
#      layout: driver-api/vfio-pci-liveupdate/index.html);
#   4. make rustdoc (objects in $BUILD/obj, the kernel must be configured:
#      `make kernel`), linked into $BUILD/docs/html/rust/rustdoc, where the
#      pages link to it. --no-rustdoc skips it.
#
# Logs: $LOGS/docs.log, $LOGS/rustdoc.log. Exit 1 on a warning about our
# files; other warnings are shown but do not fail.
set -euo pipefail
LOG_TAG=docs
. "$(dirname "$0")/lib.sh"

rustdoc=1
quiet=
for a in "$@"; do
	case "$a" in
	--no-rustdoc) rustdoc= ;;
	--quiet) quiet=1 ;;
	*) die "usage: $0 [--no-rustdoc] [--quiet]" ;;
	esac
done

SPHINXDIR=driver-api/vfio-pci-liveupdate
VENV=$BUILD/docs-venv
DOCS_OBJ=$BUILD/docs-obj
DOCS_OUT=$BUILD/docs/html
# Sphinx 8.2.3 with docutils 0.21.2: the newest combination that 7.3's
# tools/docs/test_doc_build.py builds with (needs_sphinx is 3.4.3).
PIP_PKGS=(Sphinx==8.2.3 docutils==0.21.2 alabaster==1.0.0 PyYAML==6.0.2)
# What names our pages and items in a warning.
OURS_DOC="Documentation/$SPHINXDIR/|$SPHINXDIR/|include/linux/kho/abi/vfio_pci\.h"
OURS_RS='rust/kernel/(liveupdate|kho|reboot|pci/state)\.rs|rust/helpers/(kho|pci_state)\.c'

say() { [ -n "$quiet" ] || log "$@"; }

# --- 1. Sphinx --------------------------------------------------------------
mkdir -p "$BUILD" "$LOGS"
want=$(printf '%s\n' "${PIP_PKGS[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.vfio-lu-pkgs" 2>/dev/null)" != "$want" ]; then
	py=/usr/bin/python3
	[ -x "$py" ] || die "$py missing: run scripts/setup.sh (package python3)"
	"$py" -c 'import ensurepip, venv' 2>/dev/null ||
		die "$py has no venv/ensurepip: run scripts/setup.sh (package python3-venv)"
	log "making a Python venv for the docs in $VENV: ${PIP_PKGS[*]} (from PyPI)"
	rm -rf "$VENV"
	"$py" -m venv "$VENV" || die "python3 -m venv $VENV failed"
	"$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PKGS[@]}" ||
		die "pip install ${PIP_PKGS[*]} failed"
	echo "$want" > "$VENV/.vfio-lu-pkgs"
fi
export PATH="$VENV/bin:$PATH"

# --- 2. the tree --------------------------------------------------------------
# The pages alone need only Documentation/ of the tree, which no QEMU run uses:
# they share the build lock with the runs (so make test's lint does not wait
# for them) and take a lock of their own against another docs build. rustdoc
# builds in the kernel's objects and takes the build lock alone.
if [ -n "$rustdoc" ]; then
	build_lock
else
	build_lock shared
	exec 7>>"$BUILD/.docs.lock"
	flock 7 || die "cannot lock $BUILD/.docs.lock"
fi
[ -f "$KSRC/.git/vfio-lu-pristine" ] && [ -f "$KSRC/Makefile" ] ||
	die "no kernel tree in $KSRC: run 'make kernel' first (or 'make docs', which does)"
copied=0
while read -r f; do
	if ! cmp -s "$PROJECT/$f" "$KSRC/$f"; then
		mkdir -p "$(dirname "$KSRC/$f")"
		cp "$PROJECT/$f" "$KSRC/$f"
		copied=$((copied + 1))
	fi
done < <(cd "$PROJECT" && find Documentation -type f | sort)
say "Documentation/: $copied file(s) copied into the tree"

# --- 3. Sphinx pages -------------------------------------------------------------
t0=$(date +%s)
say "rendering Documentation/$SPHINXDIR (make htmldocs SPHINXDIRS=$SPHINXDIR), log: $LOGS/docs.log"
mkdir -p "$DOCS_OBJ" "$DOCS_OUT"
rc=0
make -C "$KSRC" O="$DOCS_OBJ" SPHINXDIRS="$SPHINXDIR" BUILDDIR="$DOCS_OUT" \
	SPHINXBUILD="$VENV/bin/sphinx-build" PYTHON3="$VENV/bin/python3" \
	htmldocs > "$LOGS/docs.log" 2>&1 || rc=$?
t1=$(date +%s)
fail=0
warn_re='(WARNING|ERROR|CRITICAL|SEVERE)'
if [ "$rc" != 0 ]; then
	tail -30 "$LOGS/docs.log" >&2
	log "the docs build failed (exit $rc), see $LOGS/docs.log"
	fail=1
fi
ours=$(grep -E "$warn_re" "$LOGS/docs.log" | grep -E "$OURS_DOC" || true)
others=$(grep -E "$warn_re" "$LOGS/docs.log" | grep -vE "$OURS_DOC" || true)
if [ -n "$ours" ]; then
	printf '%s\n' "$ours" >&2
	log "warnings in our pages (above)"
	fail=1
fi
if [ -n "$others" ]; then
	printf '%s\n' "$others" | head -20 >&2
	log "$(printf '%s\n' "$others" | wc -l) warning(s) not about our pages (above; not counted)"
fi
index=$DOCS_OUT/$SPHINXDIR/index.html
[ -f "$index" ] || { log "no $index was written"; fail=1; }
say "pages rendered in $((t1 - t0)) s: $index"

# --- 4. rustdoc --------------------------------------------------------------
if [ -n "$rustdoc" ]; then
	[ -f "$KOBJ/.config" ] || die "the kernel is not configured in $KOBJ: run 'make kernel' first"
	say "rustdoc of the kernel crate (make rustdoc), log: $LOGS/rustdoc.log"
	t0=$(date +%s)
	rc=0
	kmake rustdoc > "$LOGS/rustdoc.log" 2>&1 || rc=$?
	t1=$(date +%s)
	if [ "$rc" != 0 ]; then
		grep -E '^(error|warning)' -A8 "$LOGS/rustdoc.log" | head -40 >&2
		log "make rustdoc failed (exit $rc), see $LOGS/rustdoc.log"
		fail=1
	fi
	# A rustdoc warning names its file on the "-->" line after it.
	ours=$(grep -A6 -E '^warning' "$LOGS/rustdoc.log" | grep -E -- "--> .*($OURS_RS)" || true)
	nwarn=$(grep -cE '^warning' "$LOGS/rustdoc.log" || true)
	if [ -n "$ours" ]; then
		grep -B2 -A12 -E '^warning' "$LOGS/rustdoc.log" | head -60 >&2
		log "rustdoc warnings in our items (above)"
		fail=1
	elif [ "$nwarn" != 0 ]; then
		log "$nwarn rustdoc warning(s), none about our items (see $LOGS/rustdoc.log)"
	fi
	src=$KOBJ/Documentation/output/rust/rustdoc
	if [ -f "$src/kernel/liveupdate/index.html" ]; then
		mkdir -p "$DOCS_OUT/rust"
		# Hard links: the rustdoc tree is large (~0.5 GB) and rebuilt whole.
		rsync -a --delete --link-dest="$src/" "$src/" "$DOCS_OUT/rust/rustdoc/"
		say "rustdoc in $((t1 - t0)) s: $DOCS_OUT/rust/rustdoc/kernel/liveupdate/index.html"
	else
		log "rustdoc has no kernel::liveupdate page ($src)"
		fail=1
	fi
fi

[ "$fail" = 0 ] || die "documentation build has problems (see above)"
say "documentation: $index"
