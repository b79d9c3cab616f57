#!/usr/bin/env bash
# Install what building and testing the project needs, on a Debian 12 (bookworm)
# x86_64 machine, and nothing that is already there. Idempotent: a second run
# only checks. Every install step says what it installs; a piece that cannot be
# had stops the run with a message that names it.
set -euo pipefail

say()  { printf '[setup] %s\n' "$*" >&2; }
die()  { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
	SUDO=sudo
fi

# --- APT sources: bookworm-backports and trixie-backports, nothing else. ----
# Backports have priority 100, so nothing comes from them unless asked for.
SOURCES=/etc/apt/sources.list.d/vfio-pci-lu-backports.sources
apt_updated=
apt_update() {
	if [ -z "$apt_updated" ]; then
		say "apt-get update"
		$SUDO apt-get update -qq || die "apt-get update failed"
		apt_updated=1
	fi
}
if [ ! -f "$SOURCES" ]; then
	say "adding apt sources bookworm-backports and trixie-backports ($SOURCES)"
	$SUDO tee "$SOURCES" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# --- Debian packages from bookworm. -----------------------------------------
# uuid-dev: libuuid.a, which the kernel's VFIO selftest library (libvfio) links.
pkgs=(clang-19 lld-19 llvm-19 libclang-19-dev flex bison bc libelf-dev
      libssl-dev cpio rsync make gcc libc6-dev xz-utils python3 python3-venv
      uuid-dev)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt_update
	say "installing from bookworm: ${missing[*]}"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null ||
		die "could not install: ${missing[*]}"
fi

# --- QEMU from bookworm-backports (matches the preinstalled qemu-utils). ----
if ! command -v qemu-system-x86_64 >/dev/null; then
	apt_update
	say "installing qemu-system-x86 from bookworm-backports"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null ||
		die "could not install qemu-system-x86 from bookworm-backports"
fi

# --- Linux 7.3 source from trixie-backports (newest 7.3.x there). ----------
if ! ls /usr/src/linux-source-7.3.tar.xz >/dev/null 2>&1; then
	apt_update
	say "installing linux-source-7.3 from trixie-backports"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends linux-source-7.3/trixie-backports >/dev/null ||
		die "could not install linux-source-7.3 from trixie-backports"
fi

# --- Rust std source matching rustc, from trixie-backports. ----------------
command -v rustc >/dev/null || die "rustc not found (expected the machine's rustup toolchain)"
rustver=$(rustc --version | awk '{print $2}')
if [ ! -d "/usr/src/rustc-$rustver/library/core" ]; then
	apt_update
	cand=$(apt-cache madison rust-src | awk -v v="$rustver" '
		$3 ~ "^" v "\\+" && $0 ~ /trixie-backports/ { print $3; exit }')
	[ -n "$cand" ] || die "no rust-src for rustc $rustver in trixie-backports (apt-cache madison rust-src)"
	say "installing rust-src=$cand from trixie-backports (for rustc $rustver)"
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "rust-src=$cand" >/dev/null ||
		die "could not install rust-src=$cand"
	[ -d "/usr/src/rustc-$rustver/library/core" ] ||
		die "rust-src installed but /usr/src/rustc-$rustver/library is missing"
fi

# --- bindgen >= 0.71.1 from crates.io. --------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
need_bindgen=1
if command -v bindgen >/dev/null; then
	v=$(bindgen --version | awk '{print $2}')
	if printf '0.71.1\n%s\n' "$v" | sort -V -C; then need_bindgen=; fi
fi
if [ -n "$need_bindgen" ]; then
	command -v cargo >/dev/null || die "cargo not found: cannot install bindgen-cli"
	say "installing bindgen-cli from crates.io (cargo install --locked, ~75 s)"
	cargo install --locked --quiet bindgen-cli || die "cargo install bindgen-cli failed"
fi

# --- crates of the sample VMM (samples/vfio_lu_vmm) from crates.io. ---------
# Static glibc (libc.a) comes with libc6-dev above; the crates are the ones
# Cargo.lock names, fetched once into ~/.cargo (a second run only checks).
command -v cargo >/dev/null || die "cargo not found (expected the machine's rustup toolchain)"
(cd "$(dirname "$0")/../samples/vfio_lu_vmm" && cargo fetch --locked --quiet) ||
	die "cargo fetch of the sample VMM's crates (samples/vfio_lu_vmm/Cargo.lock) failed"

say "all build and test dependencies are present"
