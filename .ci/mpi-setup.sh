#!/usr/bin/env bash
# Installs what continuum-cli's `mpi` feature needs on Debian or Ubuntu: Open MPI
# (`mpirun`, and `mpicc` with the headers and library that the `mpi` crate's
# build probes), libclang (the crate generates its bindings with bindgen at
# build time) and pkg-config (the probe's fallback). Installs only the packages
# that are missing, so a second run does nothing and prints nothing; runs
# apt-get itself as root, through sudo otherwise.
set -euo pipefail

packages=(openmpi-bin libopenmpi-dev libclang-dev pkg-config)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

if [[ $(id -u) == 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    echo "mpi-setup: installing ${missing[*]} needs root or sudo" >&2
    exit 1
fi

# apt's progress goes to a log, shown only if something fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 ||
    ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "mpi-setup: could not install ${missing[*]}" >&2
    exit 1
fi
