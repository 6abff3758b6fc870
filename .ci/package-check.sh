#!/usr/bin/env bash
# Checks what a published crate would contain: packages every crate of the
# workspace as crates.io would get it, then type-checks the packaged sources on
# their own, in a workspace of the unpacked archives whose dependencies on each
# other resolve to those archives (as they would to the published versions).
# A file left out of a package (a module, an `include_str!` asset, an example)
# fails here, not after publishing.
#
# `cargo package`'s own verification builds each package in a separate
# workspace, with the default profile and its own features, so every
# dependency is compiled three more times; a check of the three packaged crates
# together, against the test build's lockfile, finds the same missing files in
# a fraction of the time.
#
# Arguments go to `cargo package` (`--allow-dirty` checks uncommitted changes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# `cargo package` resolves the crates' dependencies on each other through a
# local registry that cargo unpacks under CARGO_HOME and treats as immutable.
# A copy left by an earlier packaging of the same version from the same path
# would be used instead of this commit's sources, so those copies (local
# registries only, never crates.io's) go first, with the packages themselves.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/continuum-[0-9]* \
  "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/continuum-models-[0-9]* target/package
cargo package --workspace --locked --no-verify "$@"

unpacked=target/package/unpacked
mkdir -p "$unpacked"
members=()
for archive in target/package/*.crate; do
  tar -xzf "$archive" -C "$unpacked"
  members+=("\"$(basename "$archive" .crate)\"")
done
version=$(basename target/package/continuum-[0-9]*.crate .crate)
version=${version#continuum-}
{
  echo "[workspace]"
  echo "members = [$(IFS=,; echo "${members[*]}")]"
  echo 'resolver = "3"'
  echo
  echo "[patch.crates-io]"
  echo "continuum = { path = \"continuum-$version\" }"
  echo "continuum-models = { path = \"continuum-models-$version\" }"
} >"$unpacked/Cargo.toml"
cp Cargo.lock "$unpacked/"
CARGO_TARGET_DIR="$root/target" cargo check --manifest-path "$unpacked/Cargo.toml" \
  --workspace --all-targets --locked --offline
