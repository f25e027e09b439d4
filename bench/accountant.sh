#!/usr/bin/env bash
# Times the privacy accountants (`dpformer bench accountant`): RDP ε of a 1,000,000-step run over the
# default 151 orders, and PLD ε of q = 0.01, σ = 1, 10,000 steps at the default discretisation, with
# the machine it ran on. Usage: bash bench/accountant.sh [path/to/dpformer] [extra flags...]
set -eu
BIN=${1:-./build/dpformer}
shift || true
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
"$BIN" bench accountant "$@"
