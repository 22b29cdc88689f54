#!/usr/bin/env bash
# Build the libFuzzer targets with clang into build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build-fuzz
CFLAGS=(-g -O1 -std=c11 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
base=(src/base/buf.c src/base/mem.c src/base/crc32c.c src/base/uuid.c)
clang "${CFLAGS[@]}" tests/fuzz/fuzz_record.c src/log/record.c "${base[@]}" -o build-fuzz/fuzz_record
clang "${CFLAGS[@]}" tests/fuzz/fuzz_json.c src/base/json.c src/base/buf.c src/base/mem.c -o build-fuzz/fuzz_json
clang "${CFLAGS[@]}" tests/fuzz/fuzz_expr.c src/spec/expr.c src/base/json.c src/base/buf.c src/base/mem.c src/base/err.c -lpg_query -lm -o build-fuzz/fuzz_expr
clang "${CFLAGS[@]}" tests/fuzz/fuzz_schema.c src/spec/schema.c src/spec/expr.c src/base/json.c src/base/buf.c src/base/mem.c src/base/err.c -lpg_query -lm -o build-fuzz/fuzz_schema
spec=(src/spec/spec.c src/spec/schema.c src/spec/expr.c src/base/json.c src/base/buf.c src/base/mem.c src/base/err.c)
clang "${CFLAGS[@]}" tests/fuzz/fuzz_spec.c "${spec[@]}" -lpg_query -lm -o build-fuzz/fuzz_spec
# cmd_decide sits in command.c, which links the log and the registry (unused without a log) and LuaJIT.
cmd=(src/command/*.c src/event/*.c src/log/*.c src/spec/*.c src/base/*.c)
clang "${CFLAGS[@]}" $(pkg-config --cflags luajit) tests/fuzz/fuzz_command.c "${cmd[@]}" \
  $(pkg-config --libs luajit) -lpg_query -lm -pthread -o build-fuzz/fuzz_command
echo "fuzz targets in build-fuzz/: fuzz_record fuzz_json fuzz_expr fuzz_schema fuzz_spec fuzz_command"
