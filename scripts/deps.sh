#!/usr/bin/env bash
# Makes sure the Debian packages dpformer builds with are installed. As root it installs what is
# missing with apt-get; otherwise it prints the exact apt-get line to run and fails.
# `scripts/deps.sh fuzz` adds what `make fuzz` needs: clang with libFuzzer and OpenMP.
# python3-torch is for the tests only: the GPT-2 forward pass is compared with PyTorch (test_lm_torch).
set -euo pipefail
PKGS=(build-essential cmake pkg-config libopenblas-openmp-dev libfftw3-dev libcjson-dev libpcre2-dev libopenmpi-dev openmpi-bin python3 python3-torch)
if [ "${1:-}" = fuzz ]; then
  PKGS+=(clang libclang-rt-dev libomp-dev)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "dpformer: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "dpformer: missing Debian packages; run:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
