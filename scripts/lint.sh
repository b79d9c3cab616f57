#!/usr/bin/env bash
# Style checks that need no VM: rustfmt on our Rust, checkpatch on our C
# patches and C files, kernel-doc on our headers. (clippy runs in the kernel
# build itself: CLIPPY=1 in lib.sh.)
# Prints one "ok"/"FAIL" line per check; exit status 1 if any failed.
set -uo pipefail
LOG_TAG=lint
. "$(dirname "$0")/lib.sh"

fail=0
check() {	# name, command...
	local name=$1 out; shift
	if out=$("$@" 2>&1); then
		echo "  ok    lint     $name"
	else
		echo "  FAIL  lint     $name"
		printf '%s\n' "$out" | head -30 | sed 's/^/        /'
		fail=1
	fi
}

mapfile -t rs < <(cd "$PROJECT" && find src rust -name '*.rs' 2>/dev/null | sort)
if [ ${#rs[@]} -gt 0 ]; then
	check "rustfmt --check (${#rs[@]} file(s))" \
		bash -c 'cd "$1" && shift && rustfmt --check --color never --edition 2021 --config-path "$0/.rustfmt.toml" "$@"' \
		"$KSRC" "$PROJECT" "${rs[@]}"
fi
for p in "$PROJECT"/patches/*.patch; do
	[ -f "$p" ] || continue
	check "checkpatch $(basename "$p")" \
		bash -c '"$0/scripts/checkpatch.pl" --no-tree --quiet --strict "$1" && true' "$KSRC" "$p"
done
mapfile -t cfiles < <(cd "$PROJECT" && find rust include src tools -name '*.[ch]' 2>/dev/null | sort)
if [ ${#cfiles[@]} -gt 0 ]; then
	check "checkpatch -f (${#cfiles[@]} C file(s))" \
		bash -c 'k=$0; cd "$1" && shift && for f; do "$k/scripts/checkpatch.pl" --no-tree --quiet --strict -f "$f" || exit 1; done' \
		"$KSRC" "$PROJECT" "${cfiles[@]}"
fi
mapfile -t hfiles < <(cd "$PROJECT" && find include -name '*.h' 2>/dev/null | sort)
if [ ${#hfiles[@]} -gt 0 ]; then
	check "kernel-doc (${#hfiles[@]} header(s))" \
		bash -c 'k=$0; cd "$1" && shift && out=$("$k/scripts/kernel-doc" -none -Wall "$@" 2>&1); echo "$out"; [ -z "$out" ]' \
		"$KSRC" "$PROJECT" "${hfiles[@]}"
fi
# The documentation renders without a warning about our pages: the kernel's
# docs build with Sphinx from PyPI (scripts/docs.sh; a few seconds warm; the
# rustdoc, ~1 min, is left to `make docs`).
check "docs build (no warnings)" "$PROJECT/scripts/docs.sh" --no-rustdoc --quiet
# The patch series: export, git am on pristine 7.3, checkpatch, last patch = build/linux.
"$PROJECT/scripts/series.sh" check || fail=1
exit $fail
