#!/usr/bin/env bash
# Build and run the forecast back-test (see README.md).  Usage:
#   bench/backtest/run.sh [--poisson] [path/to/time_series_covid19_confirmed_global.csv]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mkdir -p build
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Isrc -o build/backtest \
   bench/backtest/backtest.c src/gen/rt.c src/gen/forecast.c src/base/err.c src/base/mem.c -lm
exec build/backtest "$@"
