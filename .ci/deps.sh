#!/bin/sh
# Install the Debian packages that libsparseresid needs to build and test.
# A no-op when every package is already installed.
set -eu
# clang and libclang-rt-14-dev (libFuzzer, ASan and UBSan runtimes of clang
# 14: libclang_rt.fuzzer-x86_64.a) build the fuzz harnesses of make check-fuzz.
PKGS="make gcc g++ pkg-config libblis-dev liblapack-dev libjansson-dev libxxhash-dev check \
abigail-tools valgrind python3 python3-numpy python3-scipy python3-sklearn python3-jsonschema \
clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
