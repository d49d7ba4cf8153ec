# Shared by the tests of the example programs (tests/tools-test.sh, the
# tests/tools-*-test.sh and tests/demo-test.sh): sourced from the repository
# root after SUITE, the name of the summary line, is set. Not a test itself.
# shellcheck shell=sh disable=SC2034 # the variables are the sourcing scripts'
set -u

PY=${PYTHON:-/usr/bin/python3}
FIX=tests/fixtures
BASE=$FIX/faceapi.face_landmark_68_model.f32.safetensors
TRAINED=$FIX/faceapi.face_expression_model.f32.safetensors
CHECK_BIN=${CHECK_BIN:-build/check_sparseresid}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sr-$SUITE.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' 0
trap 'exit 1' INT TERM

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# check DESCRIPTION COMMAND...: one assertion.
check() {
    desc=$1
    shift
    if "$@"; then ok "$desc"; else bad "$desc"; fi
}

# run_with PROG NAME ARGS...: run PROG with ARGS, keep stdout, stderr and the
# exit status in $TMP/NAME.out, NAME.err and NAME.rc.
run_with() {
    bin=$1
    name=$2
    shift 2
    "$bin" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}

rc_is() { [ "$(cat "$TMP/$1.rc")" -eq "$2" ]; }

# no_temp_files DIR: no temporary file (NAME.tmp-*) is left in DIR. (ls, not
# a glob: a script may run under set -f.)
# shellcheck disable=SC2010
no_temp_files() { ! ls -a "$1" | grep -q '\.tmp-'; }

# need PROG...: end the suite with one failure when a program is not built.
need() {
    for p in "$@"; do
        if [ ! -x "$p" ]; then
            echo "FAIL $p is missing: run make all first"
            echo "$SUITE: 0 passed, 1 failed"
            exit 1
        fi
    done
}

# sweep_corpus TRY WHAT: write the unit tests' malformed files into
# $TMP/corpus (beside any put there before), run TRY FILE on each of them
# (their valid files and argument checks left out), even under set -f, and
# check that there are at least 30 and that TRY added nothing to badfiles:
# "WHAT on each". One failure when CHECK_BIN is not built.
sweep_corpus() {
    try=$1
    what=$2
    if [ ! -x "$CHECK_BIN" ]; then
        bad "$CHECK_BIN is missing: the malformed corpus was not swept"
        return
    fi
    mkdir -p "$TMP/corpus"
    SRESID_TEST_KEEP_DIR="$TMP/corpus" CK_RUN_SUITE=malformed CK_FORK=no "$CHECK_BIN" \
        >"$TMP/corpus.log" 2>&1
    glob_off=
    case $- in *f*) glob_off=1 ;; esac
    set +f
    set -- "$TMP"/corpus/*
    [ -n "$glob_off" ] && set -f
    n=0
    badfiles=""
    for f in "$@"; do
        case $(basename "$f") in
        valid_* | after_good* | args* | opts*) continue ;;
        esac
        n=$((n + 1))
        "$try" "$f"
    done
    check "the malformed corpus has at least 30 files ($n)" [ "$n" -ge 30 ]
    check "$what on each:${badfiles:- all $n}" [ -z "$badfiles" ]
}

# failed_cleanly RC ERR FILE: RC is 1 and ERR is one line naming FILE, for
# the TRY of sweep_corpus.
failed_cleanly() {
    [ "$1" -eq 1 ] && [ "$(wc -l <"$2")" -eq 1 ] && grep -qF "$(basename "$3")" "$2"
}

# finish: the summary line; the status says whether every check passed.
finish() {
    echo "$SUITE: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
