# payi — build, test, bench.
#
#   make                  build/payi (dev build: -Wall -Wextra -Werror)
#   make SANITIZE=address,undefined   the same under ASan+UBSan, in build-san/
#   make test             install what is missing, build, run every test suite
#   make bench            run the benchmarks in bench/ (starts PostgreSQL, Redis)
#   make demo             install what is missing, build, run the COVID-19 monitoring demo
#   make web              the dashboard's assets (web/ + uPlot from npm) into web/dist
#   make fuzz             build the libFuzzer targets (clang) into build-fuzz/

CC      ?= cc
# Libraries found with pkg-config; scripts/deps.sh installs their -dev packages.
PKGS    = libmicrohttpd luajit sqlite3 libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(filter clean deps test demo bench fuzz web,$(MAKECMDGOALS)),)
ifneq ($(shell pkg-config --exists $(PKGS) && echo yes),yes)
$(error missing libraries: $(PKGS); run scripts/deps.sh build (apt-get install libmicrohttpd-dev libluajit-5.1-dev libsqlite3-dev libpq-dev))
endif
ifeq ($(wildcard /usr/include/pg_query.h),)
$(error missing libpg_query; run scripts/deps.sh build (apt-get install libpg-query-dev))
endif
endif
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Isrc -g -O2 -pthread -MMD -MP $(PKG_CFLAGS)
WARN    = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -Wpointer-arith -Wformat=2 -Wvla -Wno-unused-parameter
# libpg_query (Debian's libpg-query-dev) ships no .pc file: linked by name.
LDLIBS  = $(PKG_LIBS) -lpg_query -pthread -lm

ifdef SANITIZE
BUILD   ?= build-san
SANFLAGS = -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD   ?= build
SANFLAGS =
endif

CFLAGS  = $(CFLAGS_BASE) $(WARN) $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS += $(SANFLAGS)

LIB_SRC  = $(sort $(wildcard src/*/*.c))
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ = $(BUILD)/src/main.o
UNIT_SRC = $(sort $(wildcard tests/unit/*.c))
UNIT_OBJ = $(UNIT_SRC:%.c=$(BUILD)/%.o)

.PHONY: all test unit fuzz bench demo clean deps
all: $(BUILD)/payi

deps:
	@scripts/deps.sh build

$(BUILD)/payi: $(MAIN_OBJ) $(BUILD)/libpayi.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libpayi.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/test_unit: $(UNIT_OBJ) $(BUILD)/libpayi.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -c -o $@ $<

unit: $(BUILD)/test_unit
	$(BUILD)/test_unit

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory -s all
	@tests/run.sh

fuzz:
	@tests/fuzz/build.sh

# The dashboard's assets (web/src + uPlot from npm) into web/dist, served at /.
.PHONY: web
web:
	@scripts/web.sh

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bench/run.sh

# The COVID-19 monitoring app on the real JHU data, dashboard on
# http://127.0.0.1:8080/ (DEMO_FLAGS=--fast: everything at once).
demo:
	@scripts/deps.sh demo
	@$(MAKE) --no-print-directory -s all
	@scripts/web.sh
	build/payi demo $(DEMO_FLAGS)

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(MAIN_OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
