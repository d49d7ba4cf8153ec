# libsparseresid — build, test, install. Plain GNU make; no other build system.

# The version has one source: SRESID_VERSION_* in common.h. The build stops
# when the string macro or the newest node of the version script disagree
# with it (new symbols go in the node of the version that adds them).
VERSION_H    := include/sparseresid/common.h
version_part  = $(shell sed -n 's/^\#define SRESID_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' $(VERSION_H))
VMAJOR       := $(call version_part,MAJOR)
VMINOR       := $(call version_part,MINOR)
VPATCH       := $(call version_part,PATCH)
VERSION      := $(VMAJOR).$(VMINOR).$(VPATCH)
SOMAJOR      := $(VMAJOR)
VSTRING      := $(shell sed -n 's/^\#define SRESID_VERSION_STRING "\(.*\)"$$/\1/p' $(VERSION_H))
NEWEST_NODE  := $(shell sed -n 's/^\(SPARSERESID_[0-9.]*\) {.*/\1/p' src/libsparseresid.map | tail -n 1)
ifneq ($(VSTRING),$(VERSION))
$(error $(VERSION_H): SRESID_VERSION_STRING "$(VSTRING)" is not $(VERSION), the version of its SRESID_VERSION_* macros)
endif
ifneq ($(NEWEST_NODE),SPARSERESID_$(VMAJOR).$(VMINOR))
$(error src/libsparseresid.map: the newest node is '$(NEWEST_NODE)', want SPARSERESID_$(VMAJOR).$(VMINOR) for version $(VERSION) (common.h))
endif
PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
BINDIR       ?= $(PREFIX)/bin
DATADIR      ?= $(PREFIX)/share
DESTDIR      ?=

CC           ?= cc
CXX          ?= c++
PKG_CONFIG   ?= pkg-config
PYTHON       ?= /usr/bin/python3
OPT          ?= -O2 -g
WARN         := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CSTD         := -std=c11
# Debian ships no blis.pc: fall back to plain -lblis.
BLIS_CFLAGS  ?= $(shell $(PKG_CONFIG) --cflags blis 2>/dev/null)
BLIS_LIBS    ?= $(shell $(PKG_CONFIG) --libs blis 2>/dev/null || echo -lblis)
LAPACK_LIBS  ?= $(shell $(PKG_CONFIG) --libs lapack 2>/dev/null || echo -llapack)
JANSSON_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags jansson 2>/dev/null)
JANSSON_LIBS ?= $(shell $(PKG_CONFIG) --libs jansson 2>/dev/null || echo -ljansson)
XXHASH_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libxxhash 2>/dev/null)
XXHASH_LIBS  ?= $(shell $(PKG_CONFIG) --libs libxxhash 2>/dev/null || echo -lxxhash)
CHECK_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS   ?= $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -lpthread)

DEP_LIBS     := $(BLIS_LIBS) $(LAPACK_LIBS) $(JANSSON_LIBS) $(XXHASH_LIBS) -lm -lpthread
LIB_DEFS     := -D_GNU_SOURCE -Iinclude -Isrc $(BLIS_CFLAGS) $(JANSSON_CFLAGS) $(XXHASH_CFLAGS)
LIB_CFLAGS   := $(CSTD) $(OPT) $(WARN) $(LIB_DEFS) -fvisibility=hidden $(CFLAGS)

LIB_SRC      := $(sort $(wildcard src/*/*.c))
LIB_HDR      := $(wildcard src/*/*.h)
LIB_PIC_OBJ  := $(LIB_SRC:src/%.c=build/pic/%.o)
LIB_OBJ      := $(LIB_SRC:src/%.c=build/static/%.o)
HEADERS      := $(wildcard include/sparseresid/*.h)

SONAME       := libsparseresid.so.$(SOMAJOR)
SHLIB        := lib/libsparseresid.so.$(VERSION)
STLIB        := lib/libsparseresid.a

EX_COMMON    := examples/cli.c examples/cli_json.c examples/cli_watch.c
EX_PROGS     := $(filter-out $(EX_COMMON),$(wildcard examples/sr-*.c))
# sr-demo's model and pipeline live in examples/demo/ (own sources, own tests).
DEMO_SRC     := $(sort $(wildcard examples/demo/*.c))
DEMO_HDR     := $(wildcard examples/demo/*.h)
EX_BIN       := $(EX_PROGS:examples/%.c=bin/%)

TEST_SRC     := $(sort $(wildcard tests/test_*.c)) tests/check_main.c tests/testutil.c
SAN_FLAGS    := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: all lib examples check check-layout check-unit check-asan check-valgrind check-abi check-headers \
        check-pkgconfig check-python check-tools check-demo check-scale check-fuzz fuzz fuzz-build \
        abi-baseline install uninstall deps clean run run-probe

all: lib examples

lib: $(SHLIB) lib/$(SONAME) lib/libsparseresid.so $(STLIB) sparseresid.pc

build/pic/%.o: src/%.c $(HEADERS) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -fPIC -c $< -o $@

build/static/%.o: src/%.c $(HEADERS) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(SHLIB): $(LIB_PIC_OBJ) src/libsparseresid.map
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libsparseresid.map \
	    -Wl,--no-undefined -o $@ $(LIB_PIC_OBJ) $(DEP_LIBS) $(LDFLAGS)

lib/$(SONAME): $(SHLIB)
	ln -sf $(notdir $(SHLIB)) $@

lib/libsparseresid.so: lib/$(SONAME)
	ln -sf $(SONAME) $@

$(STLIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@PRIVATE_LIBS@|$(DEP_LIBS)|g'

sparseresid.pc: sparseresid.pc.in Makefile
	$(PC_SED) $< > $@

# Example programs link the shared library, as users do.
examples: $(EX_BIN)

# the scale benchmark's generator (bench/gen-llama.c): no library needed
bin/gen-llama: bench/gen-llama.c
	@mkdir -p bin
	$(CC) $(CSTD) -O2 $(WARN) -D_GNU_SOURCE $(CFLAGS) -o $@ $< -lm

bin/%: examples/%.c $(EX_COMMON) examples/cli.h examples/cli_json.h examples/cli_watch.h $(HEADERS) \
       lib/libsparseresid.so
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(OPT) $(WARN) -D_GNU_SOURCE -Iinclude $(CFLAGS) -o $@ $< $(EX_COMMON) \
	    -Llib -lsparseresid -Wl,-rpath,'$$ORIGIN/../lib' $(JANSSON_LIBS) -lm $(LDFLAGS)

# The demo's model uses BLIS directly (it is the example of a C trainer).
bin/sr-demo: examples/sr-demo.c $(DEMO_SRC) $(DEMO_HDR) $(EX_COMMON) examples/cli.h examples/cli_watch.h $(HEADERS) \
             lib/libsparseresid.so
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(OPT) $(WARN) -D_GNU_SOURCE -Iinclude -Iexamples $(BLIS_CFLAGS) $(CFLAGS) \
	    -o $@ $< $(DEMO_SRC) $(EX_COMMON) -Llib -lsparseresid -Wl,-rpath,'$$ORIGIN/../lib' \
	    $(BLIS_LIBS) $(JANSSON_LIBS) -lm -lpthread $(LDFLAGS)

# ---- tests ----
# The unit tests link the library objects directly so that internal helpers
# can be tested too; the public ABI is exercised by the tools, the Python
# tests and the pkg-config test against the shared library.
build/check_sparseresid: $(TEST_SRC) tests/testutil.h $(LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(OPT) $(WARN) -D_GNU_SOURCE -Iinclude -Isrc -Itests $(BLIS_CFLAGS) \
	    $(JANSSON_CFLAGS) $(CHECK_CFLAGS) $(CFLAGS) -o $@ $(TEST_SRC) $(LIB_OBJ) \
	    $(CHECK_LIBS) $(DEP_LIBS) $(LDFLAGS)

build/check_sparseresid_asan: $(TEST_SRC) tests/testutil.h $(LIB_SRC) $(HEADERS) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(CSTD) -O1 -g $(WARN) $(SAN_FLAGS) -D_GNU_SOURCE -Iinclude -Isrc -Itests \
	    $(BLIS_CFLAGS) $(JANSSON_CFLAGS) $(CHECK_CFLAGS) $(CFLAGS) -o $@ $(TEST_SRC) $(LIB_SRC) \
	    $(CHECK_LIBS) $(DEP_LIBS) $(LDFLAGS)

check: check-layout check-unit check-asan check-valgrind check-headers check-abi check-pkgconfig \
       check-tools check-python check-demo check-scale check-fuzz
	@echo "check: 12 passed, 0 failed"   # the twelve groups above; make stops at a failed one

# Each src/ folder includes only its own and lower folders' private headers.
check-layout:
	./tests/layout-test.sh


check-unit: build/check_sparseresid
	SRESID_TEST_DIR=tests ./build/check_sparseresid

check-asan: build/check_sparseresid_asan
	SRESID_TEST_DIR=tests SRESID_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build/check_sparseresid_asan

check-valgrind: build/check_sparseresid
	SRESID_TEST_DIR=tests CK_FORK=no SRESID_TEST_QUICK=1 valgrind -q --error-exitcode=99 \
	    --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
	    --suppressions=tests/valgrind.supp ./build/check_sparseresid

check-headers: $(HEADERS)
	@mkdir -p build/headers
	@for h in $(notdir $(HEADERS)); do \
	  printf '#include <sparseresid/%s>\nint main(void){return 0;}\n' $$h > build/headers/$$h.c; \
	  $(CC) -std=c11 -pedantic -Wall -Wextra -Werror -Iinclude -c build/headers/$$h.c \
	      -o build/headers/$$h.o || exit 1; \
	  cp build/headers/$$h.c build/headers/$$h.cpp; \
	  $(CXX) -std=c++11 -pedantic -Wall -Wextra -Werror -Iinclude -c build/headers/$$h.cpp \
	      -o build/headers/$$h.cpp.o || exit 1; \
	done; echo "headers: each public header compiles alone as C11 and C++11"

check-abi: lib
	./abi/check-abi lib/$(SONAME)

abi-baseline: lib
	./abi/check-abi --update lib/$(SONAME)

check-pkgconfig: lib
	./tests/pkgconfig-test.sh

# a 110 M-parameter sharded BF16 pair through the programs: bounded memory,
# figures against numpy (tests/scale-test.py; bench/run-scale.sh for 1b, 7b)
check-scale: all bin/gen-llama
	$(PYTHON) tests/scale-test.py

check-tools: all build/check_sparseresid
	./tests/tools-test.sh
	@for t in $(sort $(wildcard tests/tools-*-test.sh)); do echo "== $$t"; $$t || exit 1; done

check-python: all build/asan/libsparseresid.so.1
	$(PYTHON) -m unittest discover -s tests/python -t . -v
	@echo "== the binding's views against the library built with AddressSanitizer"
	SPARSERESID_LIB=$(CURDIR)/build/asan/libsparseresid.so.1 \
	    LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	    $(PYTHON) -m unittest tests.python.test_views -v

# The library with AddressSanitizer, for the Python tests of memory ownership.
build/asan/libsparseresid.so.1: $(LIB_SRC) $(HEADERS) $(LIB_HDR) src/libsparseresid.map
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -O1 -g -fsanitize=address -fno-omit-frame-pointer -fPIC -shared \
	    -Wl,-soname,$(SONAME) -Wl,--version-script=src/libsparseresid.map -o $@ $(LIB_SRC) \
	    $(DEP_LIBS) $(LDFLAGS)

# ---- fuzzing (fuzz/README.md) ----
# libFuzzer harnesses built with clang, the library's sources compiled in
# with coverage, AddressSanitizer and UndefinedBehaviorSanitizer. The seeds
# are written by make_seeds, linked to the static library.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CHECK_SECONDS ?= 8
FUZZ_FLAGS   ?=
# harness:-max_len, room for its seeds and some growth
FUZZ_RUNS    := safetensors:16384 shards:16384 sparse:8192 amp:8192 mask:2048 optim:2048
FUZZ_NAMES   := $(foreach r,$(FUZZ_RUNS),$(firstword $(subst :, ,$(r))))
FUZZ_CFLAGS  := $(CSTD) -O1 -g $(WARN) $(LIB_DEFS) -fsanitize=address,undefined \
                -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_OBJ     := $(LIB_SRC:src/%.c=build/fuzz/obj/%.o) build/fuzz/obj/fuzz.o build/fuzz/obj/mutate.o
FUZZ_BIN     := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
FUZZ_FIXTURE := tests/fixtures/faceapi.face_landmark_68_model.f32.safetensors
# kept: make would delete them as intermediates of the pattern rules
.SECONDARY: $(FUZZ_OBJ)

build/fuzz/obj/%.o: src/%.c $(HEADERS) $(LIB_HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/obj/%.o: fuzz/%.c fuzz/fuzz.h $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(DEP_LIBS) $(LDFLAGS)

build/fuzz/make_seeds: fuzz/make_seeds.c fuzz/fuzz.c fuzz/fuzz.h $(HEADERS) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(OPT) $(WARN) -D_GNU_SOURCE -Iinclude $(CFLAGS) -o $@ fuzz/make_seeds.c \
	    fuzz/fuzz.c $(STLIB) $(DEP_LIBS) $(LDFLAGS)

build/fuzz/seeds/.done: build/fuzz/make_seeds $(FUZZ_FIXTURE)
	rm -rf build/fuzz/seeds
	./build/fuzz/make_seeds $(FUZZ_FIXTURE) build/fuzz/seeds
	touch $@

fuzz-build: $(FUZZ_BIN) build/fuzz/seeds/.done

# Each harness in turn, SECONDS each, new inputs kept in CORPUS/<harness>.
fuzz_loop = @for r in $(FUZZ_RUNS); do \
	  ./fuzz/run.sh $${r%%:*} $(1) $${r\#*:} $(2)/$${r%%:*} build/fuzz/seeds/$${r%%:*} \
	      $(FUZZ_FLAGS) || exit 1; \
	done

# FUZZ_SECONDS per harness; the corpus in build/fuzz/corpus/ grows from one
# run to the next.
fuzz: fuzz-build
	$(call fuzz_loop,$(FUZZ_SECONDS),build/fuzz/corpus)

# The short run of make check: FUZZ_CHECK_SECONDS per harness, from the
# seeds alone.
check-fuzz: fuzz-build
	@rm -rf build/fuzz/check-corpus
	$(call fuzz_loop,$(FUZZ_CHECK_SECONDS),build/fuzz/check-corpus)

# ---- demo (sr-demo: its model's gradient check, then a --quick run) ----
# The test binary links the demo's parts without sr-demo.c's main.
build/check_demo: $(wildcard tests/demo/*.c tests/demo/*.h) $(DEMO_SRC) $(DEMO_HDR) $(EX_COMMON) \
                  examples/cli.h $(HEADERS) lib/libsparseresid.so
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(OPT) $(WARN) -D_GNU_SOURCE -Iinclude -Iexamples $(BLIS_CFLAGS) $(CFLAGS) \
	    -o $@ $(sort $(wildcard tests/demo/*.c)) $(DEMO_SRC) $(EX_COMMON) -Llib -lsparseresid \
	    -Wl,-rpath,'$$ORIGIN/../lib' $(BLIS_LIBS) $(JANSSON_LIBS) -lm -lpthread $(LDFLAGS)

check-demo: build/check_demo bin/sr-demo bin/sr-info
	./build/check_demo
	PYTHON=$(PYTHON) ./tests/demo-test.sh

# The main job: sr-demo trains a small transformer on the bundled corpus,
# fine-tunes it, probes the residual and sweeps amplitude-only fine-tuning
# (docs/demo.md); outputs and cached checkpoints go to ./sr-demo-out.
run: all
	./bin/sr-demo

# The residual report of the bundled real pair (TF.js checkpoints: their
# kernels are [kh, kw, in, out], hence the out-last matrix view).
run-probe: all
	./bin/sr-probe --skip-mismatched --layout out-last \
	    tests/fixtures/faceapi.face_landmark_68_model.f32.safetensors \
	    tests/fixtures/faceapi.face_expression_model.f32.safetensors

# ---- install ----
install: lib examples
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/sparseresid \
	    $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR)
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libsparseresid.so
	install -m 644 $(STLIB) $(DESTDIR)$(LIBDIR)/
	install -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/sparseresid/
	$(PC_SED) sparseresid.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/sparseresid.pc
	chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/sparseresid.pc
	install -m 755 $(EX_BIN) $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(DATADIR)/sparseresid
	install -m 644 examples/demo/data/jargon.txt $(DESTDIR)$(DATADIR)/sparseresid/
	install -m 644 examples/demo/data/README.md $(DESTDIR)$(DATADIR)/sparseresid/jargon.README.md

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	    $(DESTDIR)$(LIBDIR)/libsparseresid.so $(DESTDIR)$(LIBDIR)/libsparseresid.a \
	    $(DESTDIR)$(LIBDIR)/pkgconfig/sparseresid.pc
	rm -rf $(DESTDIR)$(INCLUDEDIR)/sparseresid
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(EX_BIN)))
	rm -rf $(DESTDIR)$(DATADIR)/sparseresid

# Installs the Debian packages the build and the tests need; a no-op when
# all are present.
deps:
	./.ci/deps.sh

clean:
	rm -rf build lib bin sparseresid.pc
