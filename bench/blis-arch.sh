# Sourced by the bench/run-*.sh scripts before anything loads BLIS: unless
# BLIS_ARCH_TYPE is already set, export the best kernel set this CPU runs
# (0 = skx with AVX-512 F/DQ/BW/VL, 6 = zen3 with AVX2 + FMA), as the
# example programs do (DESIGN.md, platform notes), for the library and for
# numpy/scipy alike (Debian's libblas.so.3 is BLIS). Not a benchmark itself.
# shellcheck shell=sh
if [ -z "${BLIS_ARCH_TYPE:-}" ]; then
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    has() {
        case " $flags " in *" $1 "*) return 0 ;; *) return 1 ;; esac
    }
    if has avx512f && has avx512dq && has avx512bw && has avx512vl; then
        BLIS_ARCH_TYPE=0
    elif has avx2 && has fma; then
        BLIS_ARCH_TYPE=6
    fi
fi
if [ -n "${BLIS_ARCH_TYPE:-}" ]; then
    export BLIS_ARCH_TYPE
fi
