# Sourced by the project's scripts: installs what a fresh machine lacks and
# points cargo at one warm build directory outside the clone.

# librocksdb-sys generates its bindings with libclang at build time
# (libclang.so or libclang-N.so; libclang-cpp, which some images carry
# alone, is not what bindgen loads).
if ! ldconfig -p 2>/dev/null | grep -qE 'libclang(-[0-9.]+)?\.so'; then
    echo "installing libclang-dev (needed to build RocksDB's bindings)..." >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-dev >&2
fi

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component" >&2
    fi
done

# mimalloc returns freed memory to the OS after 1 s by default; applying
# blocks frees and reallocates tens of MB per block, so each block paid for
# zeroing fresh pages again (ARCHITECTURE.md, "mimalloc as the allocator").
export MIMALLOC_PURGE_DELAY="${MIMALLOC_PURGE_DELAY:-10000}"

# RocksDB's C++ takes ~20 minutes per profile and feature set: one profile
# (release) for everything, one build directory reused across clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/commons/target}"
mkdir -p "$CARGO_TARGET_DIR"

# Every cargo invocation builds the same package set with the same features,
# so RocksDB is never rebuilt because of feature unification.
commons_build() {
    cargo build --release --workspace --all-targets --locked "$@"
}
