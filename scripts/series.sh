#!/usr/bin/env bash
# The whole change as a git format-patch series against the pristine 7.3 tree.
#
#   scripts/series.sh export [DIR]   write the series to DIR (default build/series)
#   scripts/series.sh check          export, git am onto a pristine 7.3 tree,
#                                    checkpatch every patch, compare the tree at
#                                    the last patch with the one kernel.sh built;
#                                    prints "  ok    series ..." / "  FAIL  series ..."
#   scripts/series.sh build-each [DIR]
#                                    build the kernel at every patch, each in its
#                                    own O= directory (default build/series-obj);
#                                    slow, not part of the tests
#
# What goes into which patch, and the messages, are in patches/series/ (see
# its README). Every patch carries the submitter's identity: author and
# Signed-off-by are user.name and user.email of the git configuration (as
# "git config" reads them in the project's repository); the export refuses to
# run without them, or with the project's old placeholder. Otherwise it is
# deterministic: fixed dates and abbreviations, zeroed commit ids, no other
# user git configuration. The check (make test) exports with the same
# identity, or with a stand-in that it names when there is none; it also
# checks that an export without an identity is refused.
#
# The export works in a scratch git repository that borrows the objects of
# build/linux (alternates) and never writes to it.
set -euo pipefail
LOG_TAG=series
. "$(dirname "$0")/lib.sh"

MANIFEST=$PROJECT/patches/series
SERIES_DATE="2026-11-22T12:00:00+0000"

# The submitter, read before the neutral environment below.
AUTHOR_NAME=$(git -C "$PROJECT" config user.name || true)
AUTHOR_EMAIL=$(git -C "$PROJECT" config user.email || true)
# The identity the project's patches once carried, and kernel.sh's own for its
# build tree: never a submitter.
PLACEHOLDER_RE='^(vfio-pci live update developers|vfio-lu|.*<?vfio-lu@(example\.org|localhost)>?)$'

# identity_problem: why AUTHOR_NAME/AUTHOR_EMAIL cannot sign the series, or
# nothing when they can.
identity_problem() {
	if [ -z "$AUTHOR_NAME" ] || [ -z "$AUTHOR_EMAIL" ]; then
		echo "no git identity: set user.name and user.email (git config), the series' author and Signed-off-by"
	elif [[ $AUTHOR_EMAIL != *@* ]]; then
		echo "user.email '$AUTHOR_EMAIL' is not an e-mail address"
	elif grep -Eqx "$PLACEHOLDER_RE" <<< "$AUTHOR_NAME" || grep -Eqx "$PLACEHOLDER_RE" <<< "$AUTHOR_EMAIL"; then
		echo "'$AUTHOR_NAME <$AUTHOR_EMAIL>' is a placeholder, not a submitter: set user.name and user.email (git config)"
	fi
}

# use_identity: export the git environment for AUTHOR_NAME/AUTHOR_EMAIL.
use_identity() {
	export GIT_AUTHOR_NAME=$AUTHOR_NAME GIT_AUTHOR_EMAIL=$AUTHOR_EMAIL GIT_AUTHOR_DATE=$SERIES_DATE
	export GIT_COMMITTER_NAME=$AUTHOR_NAME GIT_COMMITTER_EMAIL=$AUTHOR_EMAIL GIT_COMMITTER_DATE=$SERIES_DATE
}

# Neutral, fixed git environment: no user or system configuration.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export TZ=UTC LC_ALL=C

# Where a project file lands in the tree (as in scripts/kernel.sh).
tree_path() {
	case "$1" in
	src/*) echo "$KDIR_DRIVER/${1#src/}" ;;
	Kbuild | Kconfig) echo "$KDIR_DRIVER/$1" ;;
	*) echo "$1" ;;
	esac
}

# not_excluded: filter out (stdin -> stdout) the project paths that
# patches/series/exclude names (globs, one a line, # comments).
not_excluded() {
	local pat line
	local -a pats=()
	if [ -f "$MANIFEST/exclude" ]; then
		while read -r pat; do
			[ -n "$pat" ] && [ "${pat#\#}" = "$pat" ] && pats+=("$pat")
		done < "$MANIFEST/exclude"
	fi
	while IFS= read -r line; do
		for pat in "${pats[@]}"; do
			# shellcheck disable=SC2053
			[[ $line == $pat ]] && continue 2
		done
		printf '%s\n' "$line"
	done
}

# Project files that must be in the series: what kernel.sh puts in the tree,
# the documentation and the selftests.
series_files() {
	(cd "$PROJECT" && {
		for d in rust include src Documentation tools/testing/selftests/vfio_pci_liveupdate; do
			[ -d "$d" ] && find "$d" -type f
		done
		for f in Kbuild Kconfig; do [ -f "$f" ] && echo "$f"; done
	} | not_excluded | sort)
}

# hdr FILE KEY: the values of "KEY:" header lines of a manifest entry.
hdr() {
	sed -n '/^$/q; s/^'"$2"':[[:space:]]*//p' "$1"
}
# body FILE: the message body of a manifest entry (after the first blank line).
body() {
	sed '1,/^$/d' "$1"
}
patch_file() {	# NNNN -> patches/NNNN-*.patch
	local m=("$PROJECT"/patches/"$1"-*.patch)
	[ -f "${m[0]}" ] || die "patches/$1-*.patch: no such patch"
	echo "${m[0]}"
}
# entry_files ENTRY: the project files of an entry's Files: (files, dirs, globs).
entry_files() {
	local pat
	for pat in $(hdr "$1" Files); do
		(cd "$PROJECT" && compgen -G "$pat" >/dev/null && for p in $pat; do
			if [ -d "$p" ]; then find "$p" -type f; elif [ -f "$p" ]; then echo "$p"; fi
		done) || true
	done | not_excluded | sort -u
}

# wire_filter PATCH K ASSIGNMENTS: print the diff part of PATCH keeping only
# the added/removed lines assigned to entries <= K (removed lines of later
# entries become context). ASSIGNMENTS: lines "<entry index> <regex>".
# Apply the result with git apply --recount. Fails if a changed line is
# claimed by no entry.
wire_filter() {
	awk -v K="$2" -v ASSIGN="$3" '
	BEGIN {
		n = split(ASSIGN, a, "\n")
		for (i = 1; i <= n; i++) {
			if (a[i] == "") continue
			sp = index(a[i], " ")
			nre++; re_k[nre] = substr(a[i], 1, sp - 1) + 0; re[nre] = substr(a[i], sp + 1)
		}
	}
	function owner(s,    i, best) {	# the last entry whose regex matches
		best = 0; s = tolower(substr(s, 2))
		for (i = 1; i <= nre; i++) if (s ~ re[i] && re_k[i] > best) best = re_k[i]
		return best
	}
	function flush(    i, j, o) {	# assign and print the buffered hunk body
		for (i = 1; i <= nb; i++) {
			c = substr(buf[i], 1, 1)
			own[i] = (c == "+" || c == "-") ? owner(buf[i]) : -1
		}
		# unmatched changed lines go with the previous, else the next, of their run
		for (i = 1; i <= nb; i++) if (own[i] == 0 && i > 1 && own[i-1] > 0) own[i] = own[i-1]
		for (i = nb; i >= 1; i--) if (own[i] == 0 && i < nb && own[i+1] > 0) own[i] = own[i+1]
		for (i = 1; i <= nb; i++) {
			if (own[i] == 0) { print "unassigned line: " buf[i] > "/dev/stderr"; bad = 1; continue }
			c = substr(buf[i], 1, 1)
			if (own[i] < 0 || own[i] <= K) print buf[i]
			else if (c == "-") print " " substr(buf[i], 2)
		}
		nb = 0
	}
	/^-- $/ && started { flush(); exit }
	/^diff --git / { flush(); started = 1; inhunk = 0; print; next }
	!started { next }
	/^@@ / { flush(); inhunk = 1; print; next }
	inhunk && /^[-+ \\]/ { buf[++nb] = $0; next }
	{ flush(); inhunk = 0; print }
	END { flush(); exit bad }
	' "$1"
}

# export_series DIR: write the series into DIR (emptied first).
export_series() (
	local out=$1 tmp pristine entries=() e i k
	[ -d "$KSRC/.git" ] && git -C "$KSRC" rev-parse -q --verify pristine >/dev/null ||
		die "no pristine tree in $KSRC: run scripts/kernel.sh first"
	pristine=$(git -C "$KSRC" rev-parse pristine^{commit})
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/vfio-lu-series.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" EXIT
	export GIT_DIR=$tmp/repo.git GIT_INDEX_FILE=$tmp/index
	git init -q --bare "$GIT_DIR"
	echo "$KSRC/.git/objects" > "$GIT_DIR/objects/info/alternates"
	git read-tree "$pristine"

	for e in "$MANIFEST"/[0-9][0-9][0-9][0-9]-*; do
		[ "$(basename "$e")" = 0000-cover-letter ] || entries+=("$e")
	done

	# Coverage: every series file and every patch in exactly one entry.
	local owned="" wired="" reused="" f p rx
	for e in "${entries[@]}"; do
		owned+=$(entry_files "$e")$'\n'
		reused+=$(hdr "$e" Patch)$'\n'
		wired+=$(hdr "$e" Wire | awk '{print $1}')$'\n'
	done
	local missing dup
	missing=$(comm -23 <(series_files) <(grep -v '^$' <<< "$owned" | sort -u))
	[ -z "$missing" ] || die "not in any patch of patches/series/: $(echo $missing)"
	dup=$(grep -v '^$' <<< "$owned" | sort | uniq -d)
	[ -z "$dup" ] || die "in more than one patch of patches/series/: $(echo $dup)"
	for p in "$PROJECT"/patches/*.patch; do
		[ -f "$p" ] || continue
		k=$(basename "$p"); k=${k%%-*}
		case "$(grep -cx "$k" <<< "$reused")$(grep -qx "$k" <<< "$wired" && echo w)" in
		1 | 0w) ;;
		*) die "patches/$(basename "$p") must be reused (Patch:) once or split (Wire:), not both" ;;
		esac
	done

	# Wire: per source patch, the base tree and the assignments of its lines.
	declare -A wire_base wire_assign
	for i in "${!entries[@]}"; do
		while read -r k rx; do
			[ -n "$k" ] || continue
			wire_assign[$k]+="$i $rx"$'\n'
		done < <(hdr "${entries[$i]}" Wire)
	done

	local parent=$pristine tree commit msg n=0 subject files
	for i in "${!entries[@]}"; do
		e=${entries[$i]}
		msg=$tmp/msg
		p=$(hdr "$e" Patch)
		files=$(entry_files "$e")
		if [ -n "$p" ]; then
			p=$(patch_file "$p")
			git apply --cached "$p" || die "$(basename "$p") does not apply in the series"
			git mailinfo "$tmp/mi.msg" "$tmp/mi.patch" < "$p" > "$tmp/mi.info"
			# The patch file's own sign-off is the project's placeholder.
			{ sed -n 's/^Subject: //p' "$tmp/mi.info"; echo; grep -v '^Signed-off-by: ' "$tmp/mi.msg"; } > "$msg"
		else
			subject=$(hdr "$e" Subject)
			[ -n "$subject" ] || die "$(basename "$e"): no Subject:"
			if [ -z "$files" ] && [ -z "$(hdr "$e" Wire)" ]; then
				[ "$(hdr "$e" Optional)" = yes ] && continue
				die "$(basename "$e"): Files: match nothing"
			fi
			# One update-index per entry: each call rewrites the ~90k-entry index.
			: > "$tmp/index.info"
			if [ -n "$files" ]; then
				paste <(cd "$PROJECT" && xargs -d '\n' stat -c '%A' <<< "$files" |
						awk '{ print (substr($1, 4, 1) == "x" ? "100755" : "100644") }') \
					<(cd "$PROJECT" && git hash-object -w --stdin-paths <<< "$files") \
					<(while read -r f; do tree_path "$f"; done <<< "$files") |
					awk -F'\t' '{ print $1 " " $2 "\t" $3 }' >> "$tmp/index.info"
			fi
			while read -r k rx; do
				[ -n "$k" ] || continue
				p=$(patch_file "$k")
				# The lines of this and earlier entries, applied to the tree
				# before the first entry that wires this patch.
				[ -n "${wire_base[$k]:-}" ] || wire_base[$k]=$(git write-tree)
				wire_filter "$p" "$i" "${wire_assign[$k]}" > "$tmp/wire.diff" ||
					die "$(basename "$p"): lines no entry of patches/series/ claims (see above)"
				# A small index holding only the files the patch touches.
				rm -f "$tmp/wire.index"
				sed -n 's|^diff --git a/\(.*\) b/.*|\1|p' "$tmp/wire.diff" |
					xargs -d '\n' git ls-tree -r "${wire_base[$k]}" -- |
					GIT_INDEX_FILE=$tmp/wire.index git update-index --add --index-info
				GIT_INDEX_FILE=$tmp/wire.index git apply --cached --recount "$tmp/wire.diff" ||
					die "$(basename "$e"): its lines of $(basename "$p") do not apply"
				sed -n 's|^diff --git a/\(.*\) b/.*|\1|p' "$tmp/wire.diff" |
					GIT_INDEX_FILE=$tmp/wire.index xargs -d '\n' git ls-files -s -- >> "$tmp/index.info"
			done < <(hdr "$e" Wire)
			git update-index --add --index-info < "$tmp/index.info"
			{ echo "$subject"; echo; body "$e"; } > "$msg"
		fi
		printf '%s\n\nSigned-off-by: %s <%s>\n' "$(cat "$msg")" "$AUTHOR_NAME" "$AUTHOR_EMAIL" > "$msg.signed"
		mv "$msg.signed" "$msg"
		tree=$(git write-tree)
		[ "$tree" != "$(git rev-parse "$parent^{tree}")" ] || die "$(basename "$e"): changes nothing"
		commit=$(git commit-tree "$tree" -p "$parent" -F "$msg")
		parent=$commit; n=$((n + 1))
	done

	# The cover letter takes its subject and text from the branch description.
	git update-ref refs/heads/series "$parent"
	git symbolic-ref HEAD refs/heads/series
	git config branch.series.description "$(cat "$MANIFEST/0000-cover-letter")"
	rm -rf "$out"; mkdir -p "$out"
	git format-patch -q --zero-commit --no-signature --abbrev=12 --no-renames \
		--diff-algorithm=myers --stat=80 --cover-letter --cover-from-description=subject \
		-o "$out" "$pristine..series" >/dev/null
	git rev-parse "$parent^{tree}" > "$out/.tree"
	log "$n patches + cover letter in $out"
)

# ---- check ------------------------------------------------------------------
# Lines in lint style ("  ok    series   ..." / "  FAIL  series   ..."); exit 1
# if any failed.
fail=0
ok()   { echo "  ok    series   $*"; }
bad()  { echo "  FAIL  series   $*"; fail=1; }
indent() { head -"${1:-30}" | sed 's/^/        /'; }

check_series() {
	local tmp t0 t1 out n pats p tree_series tree_build
	t0=$(date +%s.%N)
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/vfio-lu-series-check.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" EXIT

	# 0. The identity: the user's, or a stand-in for the check only. An
	# export with the project's old placeholder, or with none, is refused.
	local why refused=""
	why=$(identity_problem)
	if [ -n "$why" ]; then
		AUTHOR_NAME="series check stand-in"; AUTHOR_EMAIL="stand-in@series-check.invalid"
	fi
	use_identity
	for id in "vfio-pci live update developers|vfio-lu@example.org" "|"; do
		if out=$(GIT_CONFIG_COUNT=2 GIT_CONFIG_KEY_0=user.name GIT_CONFIG_VALUE_0="${id%|*}" \
			GIT_CONFIG_KEY_1=user.email GIT_CONFIG_VALUE_1="${id#*|}" \
			"$0" export "$tmp/refused" 2>&1) || [ -e "$tmp/refused" ]; then
			refused+="'${id%|*} <${id#*|}>': ${out:-exported}; "
		fi
	done
	if [ -z "$refused" ]; then
		ok "identity: export refuses the old placeholder and an empty identity${why:+ (here: $why; checked with a stand-in)}"
	else
		bad "identity: export accepted $refused"
	fi

	# 1. export
	if ! out=$(export_series "$tmp/series" 2>&1); then
		bad "export (scripts/series.sh export)"; printf '%s\n' "$out" | indent
		return
	fi
	mapfile -t patches < <(find "$tmp/series" -name '[0-9][0-9][0-9][0-9]-*.patch' ! -name '0000-*' | sort)
	n=${#patches[@]}
	# Every patch: From: and one Signed-off-by:, the identity's.
	local unsigned=""
	for p in "${patches[@]}"; do
		[ "$(grep -c '^Signed-off-by: ' "$p")" = 1 ] &&
			grep -qxF "Signed-off-by: $AUTHOR_NAME <$AUTHOR_EMAIL>" "$p" &&
			[ "$(git mailinfo /dev/null /dev/null < "$p" | sed -n 's/^Author: //p; s/^Email: //p' | paste -sd'|')" = "$AUTHOR_NAME|$AUTHOR_EMAIL" ] ||
			unsigned+=" $(basename "$p")"
	done
	if [ -z "$unsigned" ]; then
		ok "identity: $n patches from and signed off by $AUTHOR_NAME <$AUTHOR_EMAIL>"
	else
		bad "identity: not from and signed off by $AUTHOR_NAME <$AUTHOR_EMAIL>:$unsigned"
	fi
	# The same input gives the same bytes.
	if out=$(export_series "$tmp/again" 2>&1 && diff -r "$tmp/series" "$tmp/again" 2>&1); then
		ok "export: $n patches + cover letter, reproducible (two exports identical)"
	else
		bad "export: two exports of the same input differ"; printf '%s\n' "$out" | indent
	fi

	# 2. git am onto the pristine tree: a clone that shares build/linux's
	# objects (nothing is written there), checked out sparsely (only the files
	# the series touches and scripts/, for checkpatch), which takes about a
	# second where a full checkout of the ~90k files takes 15-40 s.
	pats=$(sed -n 's|^diff --git a/\(.*\) b/.*|/\1|p' "${patches[@]}" | sort -u)
	local k=$tmp/linux
	if ! out=$(git clone -q --shared --no-checkout "$KSRC" "$k" 2>&1 &&
		{ printf '%s\n' "$pats"; echo /scripts/; } | git -C "$k" sparse-checkout set --no-cone --stdin 2>&1 &&
		git -C "$k" checkout -q --detach pristine 2>&1); then
		bad "git am: cannot make a pristine tree from $KSRC"; printf '%s\n' "$out" | indent
		return
	fi
	if out=$(git -C "$k" am -q "${patches[@]}" 2>&1); then
		tree_series=$(git -C "$k" rev-parse 'HEAD^{tree}')
		if [ "$tree_series" = "$(cat "$tmp/series/.tree")" ]; then
			ok "git am: $n patches apply to pristine 7.3"
		else
			bad "git am: $n patches apply to pristine 7.3 but give another tree than the export"
		fi
	else
		bad "git am: the series does not apply to pristine 7.3"
		printf '%s\n' "$out" | indent
		git -C "$k" am --abort >/dev/null 2>&1 || true
		tree_series=""
	fi

	# 3. checkpatch, every patch (two at a time). Errors fail; warnings (a new
	# file always asks whether MAINTAINERS needs updating) and checks are
	# counted.
	local cp=$k/scripts/checkpatch.pl e=0 w=0 c=0 errs=""
	[ -f "$cp" ] || cp=$KSRC/scripts/checkpatch.pl
	printf '%s\0' "${patches[@]}" |
		xargs -0 -P2 -n1 sh -c 'perl "$0" --no-tree --strict --show-types "$1" > "$1.checkpatch" 2>&1; true' "$cp"
	for p in "${patches[@]}"; do
		read -r pe pw pc < <(sed -n 's/^total: \([0-9]*\) errors, \([0-9]*\) warnings, \([0-9]*\) checks.*/\1 \2 \3/p' "$p.checkpatch")
		if [ -z "${pe:-}" ]; then
			errs+="$(basename "$p"): checkpatch did not finish"$'\n'$(tail -5 "$p.checkpatch")$'\n'; e=$((e + 1)); continue
		fi
		e=$((e + pe)); w=$((w + pw)); c=$((c + pc))
		[ "$pe" = 0 ] || errs+="$(basename "$p"):"$'\n'$(grep -A3 '^ERROR:' "$p.checkpatch")$'\n'
	done
	if [ "$e" = 0 ]; then
		ok "checkpatch --strict: $n patches, 0 errors, $w warnings, $c checks"
	else
		bad "checkpatch --strict: $e errors, $w warnings, $c checks in $n patches"
		printf '%s' "$errs" | indent 40
	fi

	# 4. The tree at the last patch is the tree scripts/kernel.sh built in
	# build/linux (pristine + patches/ + overlay), so the kernel build that
	# the test command runs is the build at the last patch. Documentation/
	# and the selftests are not part of that build and are left out of the
	# comparison. The tree of build/linux's
	# working tree (tracked files and the overlay, which its .gitignore from
	# Debian hides: hence -f) is computed with a copy of its index in the
	# clone, so build/linux is only read. No build lock: kernel.sh changes
	# build/linux only in its first seconds, and waiting for a whole build
	# would stall the lint.
	if [ -n "$tree_series" ]; then
		local kg=(git -c core.sparseCheckout=false --git-dir="$k/.git" --work-tree="$KSRC")
		if ! tree_build=$(cp "$KSRC/.git/index" "$tmp/build.index" &&
			GIT_INDEX_FILE=$tmp/build.index "${kg[@]}" add -A -f . &&
			GIT_INDEX_FILE=$tmp/build.index "${kg[@]}" write-tree); then
			bad "last patch = build/linux: cannot read the tree of $KSRC"
		else
			out=$(git -C "$k" diff --stat=80 "$tree_build" "$tree_series" -- . \
				':(exclude)Documentation' ':(exclude)tools/testing/selftests/vfio_pci_liveupdate')
			if [ -z "$out" ]; then
				ok "tree at the last patch = build/linux, the tree kernel.sh built"
			else
				bad "tree at the last patch differs from build/linux (build first: scripts/kernel.sh; build/linux -> last patch:)"
				printf '%s\n' "$out" | indent
			fi
		fi
	fi
	t1=$(date +%s.%N)
	log "series check took $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s"
}

# ---- build-each ----------------------------------------------------------------
# Build the kernel at every patch of the series, in DIR: a clone of build/linux
# (DIR/linux) that steps through the patches and one O= directory (DIR/obj),
# built incrementally from one patch to the next (kbuild rebuilds what each
# patch changes); the config is the selftests' fragment, olddefconfig'd at
# every patch. Leaves build/linux and build/obj alone. The first build is
# cold (about 11 min on 2 cores), each further patch takes a minute or two.
build_each() {
	local dir=$1 k obj n i c subject t0 t1 frag=$SELFTESTS/config rc=0
	k=$dir/linux; obj=$dir/obj
	mkdir -p "$dir" "$obj"
	export_series "$dir/series"
	mapfile -t patches < <(find "$dir/series" -name '[0-9][0-9][0-9][0-9]-*.patch' ! -name '0000-*' | sort)
	n=${#patches[@]}
	[ -d "$k/.git" ] || git clone -q --shared --no-checkout "$KSRC" "$k"
	git -C "$k" am --abort >/dev/null 2>&1 || true
	log "checking out pristine 7.3 in $k"
	git -C "$k" checkout -q -f --detach pristine
	git -C "$k" clean -q -fdx
	git -C "$k" am -q "${patches[@]}" || die "the series does not apply (scripts/series.sh check)"
	mapfile -t commits < <(git -C "$k" rev-list --reverse "pristine..HEAD")
	: > "$obj/.config"
	for i in "${!commits[@]}"; do
		c=${commits[$i]}
		subject=$(git -C "$k" log -1 --format=%s "$c")
		git -C "$k" checkout -q --detach "$c"
		# The fragment again at every patch: olddefconfig drops what the
		# Kconfig of an earlier patch did not know yet (the driver's option).
		grep -E '^CONFIG_' "$frag" >> "$obj/.config"
		t0=$(date +%s)
		if make -C "$k" O="$obj" LLVM=-19 CLIPPY=1 RUST_LIB_SRC="$(rust_lib_src)" -j"$JOBS" \
			olddefconfig bzImage modules > "$dir/build-$((i + 1)).log" 2>&1; then
			t1=$(date +%s)
			echo "  ok    series   build at patch $((i + 1))/$n ($((t1 - t0)) s): $subject"
		else
			t1=$(date +%s)
			echo "  FAIL  series   build at patch $((i + 1))/$n ($((t1 - t0)) s): $subject (see $dir/build-$((i + 1)).log)"
			grep -E 'error|Error' "$dir/build-$((i + 1)).log" | head -20 | indent
			rc=1
		fi
	done
	grep -q '^CONFIG_VFIO_PCI_LIVEUPDATE=m' "$obj/.config" && [ -f "$obj/$KDIR_DRIVER/vfio_pci_liveupdate.ko" ] ||
		{ echo "  FAIL  series   vfio_pci_liveupdate.ko not built at the last patch"; rc=1; }
	return $rc
}

# require_identity: die unless the git identity can sign the series.
require_identity() {
	local why
	why=$(identity_problem)
	[ -z "$why" ] || die "$why; nothing written"
	use_identity
}

case "${1:-}" in
build-each)
	require_identity
	build_each "$(realpath -m "${2:-$BUILD/series-each}")"
	;;
check)
	check_series
	exit $fail
	;;
export)
	require_identity
	out=${2:-$BUILD/series}
	export_series "$(realpath -m "$out")"
	;;
*)
	echo "usage: $0 export [DIR] | check | build-each [DIR]" >&2
	exit 2
	;;
esac
