#!/usr/bin/env bash
# The README's test command (after the kernel build): style checks, then the
# two-stage QEMU test. Ends with "N passed, N failed" over all of them and
# exits non-zero if anything failed.
set -uo pipefail
LOG_TAG=test
. "$(dirname "$0")/lib.sh"

lint_out=$("$PROJECT/scripts/lint.sh"); lint_rc=$?
printf '%s\n' "$lint_out"
vm_out=$("$PROJECT/scripts/vmtest.sh" --mode test --name test "$@"); vm_rc=$?
printf '%s\n' "$vm_out"

lp=$(grep -c '^  ok ' <<< "$lint_out")
lf=$(grep -c '^  FAIL ' <<< "$lint_out")
read -r vp vf vs < <(awk '/^vm: [0-9]+ passed, [0-9]+ failed/ {
	s = 0; if (match($0, /[0-9]+ skipped/)) s = substr($0, RSTART) + 0
	print $2, $4, s }' <<< "$vm_out")
if [ -z "${vp:-}" ]; then
	# The VM run did not even report: count it as one failure.
	vp=0; vf=1; vs=0
fi
passed=$((lp + vp)); failed=$((lf + vf))
if [ "$lint_rc" != 0 ] || [ "$vm_rc" != 0 ]; then
	[ "$failed" -gt 0 ] || [ "$vs" -gt 0 ] || failed=1
fi
if [ "$vs" -gt 0 ]; then
	echo "$passed passed, $failed failed, $vs skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ] && [ "$vs" = 0 ]
