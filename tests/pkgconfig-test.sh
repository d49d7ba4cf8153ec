#!/usr/bin/env bash
# tests/pkgconfig-test.sh — install libsparseresid into a temporary prefix and
# build a user program against it with nothing but pkg-config, as a user
# would: shared and static, then uninstall. Run by `make check-pkgconfig`
# from the repository root; never touches the system prefix.
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
MAKE=${MAKE:-make}
CC=${CC:-cc}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sresid-pc.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
pcdir=$prefix/lib/pkgconfig

passed=0
failed=0
pass() {
    echo "pkgconfig: ok   $1"
    passed=$((passed + 1))
}
fail() {
    echo "pkgconfig: FAIL $1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        sed -n '1,40s/^/    /p' "$2"
    fi
    failed=$((failed + 1))
}

# pkg-config restricted to the temporary prefix (no system .pc files).
pc() {
    PKG_CONFIG_PATH=$pcdir PKG_CONFIG_LIBDIR=$pcdir "$PKG_CONFIG" "$@"
}

version=$(sed -n 's/^#define SRESID_VERSION_STRING "\(.*\)"$/\1/p' "$root/include/sparseresid/common.h")

cat > "$tmp/prog.c" <<'EOF'
/* A user program: builds, saves, reopens and reads a model through the
 * installed library, and checks one error path. Exit 0 only if all hold. */
#include <sparseresid/sparseresid.h>

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "prog:%d: check failed: %s (last error: \"%s\")\n",    \
                    __LINE__, #cond, sresid_last_error());                         \
            failures++;                                                            \
        }                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    static const float vals[6] = {1.5f, -2.25f, 0.0f, 3.0e-8f, 65504.0f, -0.125f};
    const int64_t shape[2] = {2, 3};
    char path[4096], missing[4096];
    sresid_model *m = NULL, *r = NULL, *bad = NULL;

    if (argc != 2) {
        fprintf(stderr, "usage: prog DIR\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/prog.safetensors", argv[1]);
    snprintf(missing, sizeof missing, "%s/does-not-exist.safetensors", argv[1]);

    CHECK(sresid_version_number() == SRESID_VERSION_NUMBER);
    CHECK(strcmp(sresid_version_string(), SRESID_VERSION_STRING) == 0);

    CHECK(sresid_model_create(NULL, &m) == SRESID_OK && m != NULL);
    if (m) {
        CHECK(sresid_model_add_tensor(m, "layers.0.w", SRESID_DTYPE_F32, 2, shape, vals,
                                      sizeof vals, 0) == SRESID_OK);
        CHECK(sresid_model_set_metadata(m, "format", "pt") == SRESID_OK);
        CHECK(sresid_model_save(m, path, NULL) == SRESID_OK);
        sresid_model_free(m);
    }

    CHECK(sresid_model_open(path, NULL, &r) == SRESID_OK && r != NULL);
    if (r) {
        sresid_tensor_info info;
        size_t idx = 99;
        float out[8];
        const char *value = NULL;

        CHECK(sresid_model_tensor_count(r) == 1);
        CHECK(sresid_model_find(r, "layers.0.w", &idx) == SRESID_OK && idx == 0);
        memset(&info, 0, sizeof info);
        info.size = sizeof info;
        CHECK(sresid_model_tensor_info(r, 0, &info) == SRESID_OK);
        CHECK(info.name != NULL && strcmp(info.name, "layers.0.w") == 0);
        CHECK(info.dtype == SRESID_DTYPE_F32 && info.ndim == 2 && info.shape != NULL);
        CHECK(info.shape != NULL && info.shape[0] == 2 && info.shape[1] == 3);
        CHECK(info.numel == 6 && info.nbytes == sizeof vals);
        memset(out, 0xff, sizeof out);
        CHECK(sresid_model_read_f32(r, 0, out, 8) == SRESID_OK);
        CHECK(memcmp(out, vals, sizeof vals) == 0);
        CHECK(sresid_model_metadata_get(r, "format", &value) == SRESID_OK && value != NULL &&
              strcmp(value, "pt") == 0);
        sresid_model_free(r);
    }

    CHECK(sresid_model_open(missing, NULL, &bad) == SRESID_ERR_IO);
    CHECK(bad == NULL);
    CHECK(sresid_last_error()[0] != '\0');
    CHECK(strstr(sresid_last_error(), "does-not-exist") != NULL);
    CHECK(sresid_strerror(SRESID_ERR_IO) != NULL && sresid_strerror(SRESID_ERR_IO)[0] != '\0');
    sresid_model_free(NULL);

    printf("prog: %s (library %s)\n", failures ? "FAILED" : "ok", sresid_version_string());
    return failures ? 1 : 0;
}
EOF

# ---- install ----
if "$MAKE" -C "$root" -s install PREFIX="$prefix" > "$tmp/install.log" 2>&1; then
    : > "$tmp/missing"
    for f in "lib/libsparseresid.so.$version" lib/libsparseresid.so.1 lib/libsparseresid.so \
             lib/libsparseresid.a lib/pkgconfig/sparseresid.pc bin/sr-demo bin/sr-probe \
             share/sparseresid/jargon.txt; do
        [ -e "$prefix/$f" ] || echo "missing: $f" >> "$tmp/missing"
    done
    for h in "$root"/include/sparseresid/*.h; do
        cmp -s "$h" "$prefix/include/sparseresid/$(basename "$h")" ||
            echo "missing or different: include/sparseresid/$(basename "$h")" >> "$tmp/missing"
    done
    [ "$(readlink "$prefix/lib/libsparseresid.so.1")" = "libsparseresid.so.$version" ] ||
        echo "lib/libsparseresid.so.1 does not link to libsparseresid.so.$version" >> "$tmp/missing"
    if [ -s "$tmp/missing" ]; then
        fail "make install PREFIX=<tmp>: installed files" "$tmp/missing"
    else
        pass "make install PREFIX=<tmp>: library, symlinks, headers, sparseresid.pc, programs and the demo's corpus installed"
    fi
else
    fail "make install PREFIX=<tmp>" "$tmp/install.log"
fi

# The installed sr-demo finds the installed corpus (tiny settings: a smoke
# run from outside the source tree, not a result).
if (cd "$tmp" && "$prefix/bin/sr-demo" --quick --steps 4 --pretrain-steps 4 --seeds 1 \
        --out "$tmp/demo" --no-progress > "$tmp/demo.log" 2>&1) &&
   grep -qF "corpus: $prefix/bin/../share/sparseresid/jargon.txt" "$tmp/demo.log"; then
    pass "installed sr-demo runs on the installed corpus"
else
    fail "installed sr-demo runs on the installed corpus" "$tmp/demo.log"
fi

# ---- the .pc file describes the prefix it was installed into ----
{
    got=$(pc --modversion sparseresid 2>&1 | sed 's/[[:space:]]*$//') || true
    [ "$got" = "$version" ] || echo "modversion: '$got', want '$version'"
    got=$(pc --variable=libdir sparseresid 2>&1 | sed 's/[[:space:]]*$//') || true
    [ "$got" = "$prefix/lib" ] || echo "libdir: '$got', want '$prefix/lib'"
    got=$(pc --variable=includedir sparseresid 2>&1 | sed 's/[[:space:]]*$//') || true
    [ "$got" = "$prefix/include" ] || echo "includedir: '$got', want '$prefix/include'"
    got=$(pc --cflags sparseresid 2>&1 | sed 's/[[:space:]]*$//') || true
    [ "$got" = "-I$prefix/include" ] || echo "cflags: '$got', want '-I$prefix/include'"
    got=$(pc --libs sparseresid 2>&1 | sed 's/[[:space:]]*$//') || true
    [ "$got" = "-L$prefix/lib -lsparseresid" ] || echo "libs: '$got', want '-L$prefix/lib -lsparseresid'"
} > "$tmp/pc.err"
if [ -s "$tmp/pc.err" ]; then
    fail "sparseresid.pc points at the install prefix" "$tmp/pc.err"
else
    pass "sparseresid.pc: version $version, libdir and includedir in the install prefix"
fi

# ---- shared: cc prog.c $(pkg-config --cflags --libs sparseresid) ----
mkdir -p "$tmp/run-shared" "$tmp/run-static"
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
if "$CC" -std=c11 -Wall -Wextra -pedantic -Werror -o "$tmp/prog" "$tmp/prog.c" \
        $(pc --cflags --libs sparseresid) > "$tmp/cc.log" 2>&1; then
    if LD_LIBRARY_PATH=$prefix/lib "$tmp/prog" "$tmp/run-shared" > "$tmp/run.log" 2>&1; then
        # The library that ran is the installed one, not a build tree or system copy.
        resolved=$(LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/prog" | awk '$1 == "libsparseresid.so.1" { print $3 }')
        if [ "$resolved" = "$prefix/lib/libsparseresid.so.1" ]; then
            pass "shared: built with pkg-config --cflags --libs, runs against the installed library"
        else
            echo "libsparseresid.so.1 resolved to '$resolved'" > "$tmp/ldd.err"
            fail "shared: program ran against the wrong library" "$tmp/ldd.err"
        fi
    else
        fail "shared: program checks" "$tmp/run.log"
    fi
else
    fail "shared: compile and link with pkg-config --cflags --libs" "$tmp/cc.log"
fi

# ---- static: the archive plus pkg-config --static private libraries ----
# (A fully -static executable is not attempted: Debian's libblis needs
# libgomp, which has no usable static form.)
static_libs=()
static_ok=1
if words=$(pc --static --libs sparseresid 2> "$tmp/pcs.err"); then
    read -r -a split <<< "$words"
    for w in "${split[@]}"; do
        if [ "$w" = "-lsparseresid" ]; then
            static_libs+=("$prefix/lib/libsparseresid.a")
        else
            static_libs+=("$w")
        fi
    done
else
    static_ok=0
    fail "static: pkg-config --static --libs sparseresid" "$tmp/pcs.err"
fi
if [ "$static_ok" = 1 ]; then
    # shellcheck disable=SC2046 # word splitting of pkg-config output is intended
    if "$CC" -std=c11 -Wall -Wextra -pedantic -Werror -o "$tmp/prog-static" "$tmp/prog.c" \
            $(pc --cflags sparseresid) "${static_libs[@]}" > "$tmp/cc-static.log" 2>&1; then
        if readelf -d "$tmp/prog-static" | grep -q 'NEEDED.*libsparseresid'; then
            readelf -d "$tmp/prog-static" | grep NEEDED > "$tmp/needed"
            fail "static: program still needs the shared libsparseresid" "$tmp/needed"
        elif env -u LD_LIBRARY_PATH "$tmp/prog-static" "$tmp/run-static" > "$tmp/run-static.log" 2>&1; then
            pass "static: libsparseresid.a + pkg-config --static --libs private libraries, runs"
        else
            fail "static: program checks" "$tmp/run-static.log"
        fi
    else
        fail "static: link libsparseresid.a with the Libs.private of sparseresid.pc" "$tmp/cc-static.log"
    fi
fi

# ---- uninstall ----
if "$MAKE" -C "$root" -s uninstall PREFIX="$prefix" > "$tmp/uninstall.log" 2>&1; then
    if [ -d "$prefix" ]; then
        find "$prefix" ! -type d > "$tmp/left"
    else
        : > "$tmp/left"
    fi
    if [ -s "$tmp/left" ]; then
        sed -i "s|^$prefix/|left behind: |" "$tmp/left"
        fail "make uninstall PREFIX=<tmp> leaves files" "$tmp/left"
    else
        pass "make uninstall PREFIX=<tmp>: no file left in the prefix"
    fi
else
    fail "make uninstall PREFIX=<tmp>" "$tmp/uninstall.log"
fi

echo "pkgconfig: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
