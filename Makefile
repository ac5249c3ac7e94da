# cunicorn — build, test, bench.
#   make            build/cunicorn (+ build/gunicorn, the compatibility name)
#   make unit       C unit tests under ASan+UBSan
#   make fuzz       libFuzzer targets, each run for FUZZ_SECONDS under ASan+UBSan
#   make test       everything scripts/test.sh runs (the README's test command)
PYTHON      ?= /usr/bin/python3
PY_CFLAGS   := $(shell pkg-config --cflags python3-embed)
PY_LIBS     := $(shell pkg-config --libs python3-embed)
# build/cunicorn links libpython statically when the static library is there
# (Debian's libpython3.X-dev ships it): that archive is the build Debian's
# own /usr/bin/python3 is linked from (the package's changelog: PGO/LTO
# builds where enabled), while libpython3.X.so is a separate -fPIC build
# whose calls between its own functions go through the PLT.  Measured
# with bench/asgi_instr.py: a FastAPI request costs 10% fewer
# instructions (232.8k -> 208.7k), a raw ASGI hello 11% (38.5k -> 34.4k).
# Like /usr/bin/python3, the binary is then not position-independent (the
# archive is not PIC): its own code sits at a fixed address, while
# libraries, stack and heap stay randomised.  PYLINK=shared links libpython.so (a PIE binary) instead.
# The whole archive is linked and exported, so that extension modules find
# every symbol of the C API, as in python3.  The sanitized binary and the
# unit tests use the shared library (they test our C, not Python's speed).
PYLINK      ?= static
PY_VERSION  := $(shell pkg-config --modversion python3-embed)
PY_STATIC   := $(wildcard $(shell pkg-config --variable=libdir python3-embed)/libpython$(PY_VERSION).a)
ifeq ($(PYLINK)$(if $(PY_STATIC),-found),static-found)
BIN_PY_LIBS := -no-pie -Wl,--whole-archive $(PY_STATIC) -Wl,--no-whole-archive -ldl -lexpat -lz -lm
else
BIN_PY_LIBS := $(PY_LIBS)
endif
Z_CFLAGS    := $(shell pkg-config --cflags zlib)
Z_LIBS      := $(shell pkg-config --libs zlib)
# TLS (src/tls.c): OpenSSL's libssl and libcrypto
SSL_CFLAGS  := $(shell pkg-config --cflags openssl)
SSL_LIBS    := $(shell pkg-config --libs openssl)
PY_EXT      := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
CC          ?= cc
OPT         ?= -O2 -g
WARN        := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS_ALL  := -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -fno-strict-aliasing -pthread $(PY_CFLAGS) $(Z_CFLAGS) $(SSL_CFLAGS) $(CFLAGS)
LDLIBS_ALL  := $(PY_LIBS) $(Z_LIBS) $(SSL_LIBS) -pthread -lm $(LDLIBS)
SAN         := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS        := $(wildcard src/*.c)
LIB_SRCS    := $(filter-out src/main.c,$(SRCS))
OBJS        := $(patsubst src/%.c,build/obj/%.o,$(SRCS))
SAN_OBJS    := $(patsubst src/%.c,build/san/%.o,$(LIB_SRCS))
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(patsubst tests/unit/%.c,build/unit/%,$(UNIT_SRCS))
FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS   := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 30

.PHONY: all unit fuzz test clean ext san-bin
.SECONDARY: $(SAN_OBJS) build/san/main.o
all: build/cunicorn build/gunicorn ext

build/obj/%.o: src/%.c $(wildcard src/*.h) | build/obj
	$(CC) $(CFLAGS_ALL) -MMD -c -o $@ $<

build/cunicorn: $(OBJS) Makefile
	$(CC) $(CFLAGS_ALL) -o $@ $(OBJS) $(BIN_PY_LIBS) $(Z_LIBS) $(SSL_LIBS) -pthread -lm $(LDLIBS) -Wl,--export-dynamic

build/gunicorn: build/cunicorn
	ln -sf cunicorn $@

# The dirty codec as an ordinary extension module, for Python processes
# that are not cunicorn's (tests, benchmarks, a client script).
ext: build/python/_cunicorn_dirty$(PY_EXT)
build/python/_cunicorn_dirty$(PY_EXT): src/dirty_pyext.c src/dirty_pycodec.c src/dirty_pyconn.c src/dirty_pyreader.c src/dirty_wire.c src/buf.c src/log.c src/log_syslog.c src/util.c $(wildcard src/*.h) | build/python
	$(CC) $(CFLAGS_ALL) -fPIC -shared -DCUNICORN_STANDALONE_EXT -o $@ src/dirty_pyext.c src/dirty_pycodec.c src/dirty_pyconn.c src/dirty_pyreader.c src/dirty_wire.c src/buf.c src/log.c src/log_syslog.c src/util.c

# The whole server under ASan + UBSan, for the integration tests that
# scripts/test.sh runs against it (build-san/../python is the package dir).
san-bin: build-san/cunicorn build-san/gunicorn
build-san/cunicorn: $(SAN_OBJS) build/san/main.o
	mkdir -p build-san
	$(CC) $(CFLAGS_ALL) $(SAN) -O1 -o $@ $(SAN_OBJS) build/san/main.o $(LDLIBS_ALL) -Wl,--export-dynamic
build-san/gunicorn: build-san/cunicorn
	ln -sf cunicorn $@

build/san/%.o: src/%.c $(wildcard src/*.h) | build/san
	$(CC) $(CFLAGS_ALL) $(SAN) -O1 -c -o $@ $<

build/unit/%: tests/unit/%.c tests/unit/check.h $(SAN_OBJS) | build/unit
	$(CC) $(CFLAGS_ALL) $(SAN) -O1 -Isrc -o $@ $< $(SAN_OBJS) $(LDLIBS_ALL)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done

# libFuzzer targets link only the pure-C modules they exercise.
FUZZ_DEPS := src/dirty_wire.c src/buf.c src/dirty_stash.c src/dirty_stash_table.c src/http_parser.c src/http_chunked.c src/http_conn.c src/conn_out.c src/util.c src/log.c src/log_syslog.c \
             src/ws_frame.c src/ws_deflate.c src/proxy_proto.c src/ip_allow.c src/uwsgi_proto.c src/tls.c
build/fuzz/%: tests/fuzz/%.c $(FUZZ_DEPS) $(wildcard src/*.h) | build/fuzz
	clang -std=gnu11 -g -O1 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_DEPS) $(Z_LIBS) $(SSL_LIBS)

# One run per target, each FUZZ_SECONDS long after its seeds and corpus have
# all been run; with -j the targets build and run side by side (each one
# process: a target's time is wall clock, so it gets a CPU of its own only
# with no more jobs than CPUs).  A target's whole output is kept in
# build/fuzz/NAME.log; its last lines are printed; a crash fails the run.
FUZZ_RUNS   := $(patsubst build/fuzz/%,fuzz-run-%,$(FUZZ_BINS))
.PHONY: $(FUZZ_RUNS)
fuzz: $(FUZZ_RUNS)
$(FUZZ_RUNS): fuzz-run-%: build/fuzz/%
	@mkdir -p build/fuzz/corpus-$*; \
	build/fuzz/$* -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build/fuzz/corpus-$* \
	  tests/fuzz/seeds/$* > build/fuzz/$*.log 2>&1; rc=$$?; \
	echo "== build/fuzz/$* ($(FUZZ_SECONDS)s, exit $$rc)"; tail -n 3 build/fuzz/$*.log; exit $$rc

test:
	scripts/test.sh

build/obj build/san build/unit build/fuzz build/python:
	mkdir -p $@

clean:
	rm -rf build build-san

-include $(wildcard build/obj/*.d)
