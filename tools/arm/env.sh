# Sourced by the tools/arm scripts: the environment of an aarch64 cross build.
#
# The machine's default cargo/rustc (rustup's, in ~/.cargo/bin) has no aarch64 standard
# library and cannot download one, so cross builds use Debian's rustc-web/cargo-web
# (/usr/bin/cargo, /usr/bin/rustc, /usr/bin/rustdoc), which do have it
# (libstd-rust-web-dev:arm64). A directory of links put first on PATH makes every tool that
# runs `cargo` or `rustc` by name (cargo itself, maturin) use Debian's. The aarch64 linker
# and the qemu runner come from .cargo/config.toml.
arm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export ARM_TARGET=aarch64-unknown-linux-gnu
# Its own target directory: another compiler would otherwise invalidate the host build.
export CARGO_TARGET_DIR="$arm_root/target/aarch64"
arm_bin="$CARGO_TARGET_DIR/toolchain-bin"
mkdir -p "$arm_bin"
for tool in cargo rustc rustdoc; do
    ln -sfn "/usr/bin/$tool" "$arm_bin/$tool"
done
export PATH="$arm_bin:$PATH"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
unset arm_bin
