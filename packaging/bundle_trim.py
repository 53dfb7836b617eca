"""Which of the files PyInstaller collects go into Hearth's bundle (used by hearth.spec).

PySide6's hooks collect every plugin of each Qt module imported, Qt's translations of its own
dialogs into ~40 languages, and the libraries those plugins link to. Hearth is a widgets app in
English that loads none of: Qt's translations (it has no translations of its own yet, so a
translated "Cancel" beside English text would only look broken), Qt Quick/QML, PDF, OpenGL
widgets, SQL drivers (it uses Python's sqlite3), printing, network information and TLS plugins
(Python does the networking; Qt's network module is there for the single-instance socket), and the
embedded-device platforms (eglfs, linuxfb, vnc, evdev input).

What stays: the platforms a desktop runs (xcb, wayland; offscreen for ``--self-test``), SVG and
ICO images and icons, input methods (compose keys, ibus), the XDG-portal theme (file dialogs of
the desktop), Wayland's decorations and shell integrations.
"""

from __future__ import annotations

import re
import subprocess

# Matched against the destination path inside the bundle, with "/" separators. Qt's files sit
# in PySide6/Qt/ on Linux and macOS and in PySide6/ itself on Windows.
_QT = r"(^|/)PySide6/(Qt6?/)?"
_DROP = [
    _QT + r"translations/",
    _QT + r"qml/",
    _QT + r"plugins/(designer|qmllint|qmltooling|sqldrivers|printsupport|tls|"
    r"networkinformation|egldeviceintegrations|generic|vectorimageformats|sceneparsers|"
    r"renderers|geometryloaders|assetimporters|multimedia|position|texttospeech)/",
    _QT + r"plugins/platforms/(lib)?q(eglfs|linuxfb|minimal|minimalegl|vnc|vkkhrdisplay|"
    r"direct2d)\.",
    _QT + r"plugins/imageformats/(lib)?q(gif|icns|jpeg|pdf|tga|tiff|wbmp|webp)\.",
    _QT + r"plugins/platforminputcontexts/(lib)?qtvirtualkeyboard",
    # The GTK 3 theme would load the system's GTK against the cairo and pango of the build
    # machine (18 libraries it drags in); the XDG portal theme gives native file dialogs.
    _QT + r"plugins/platformthemes/(lib)?qgtk3",
    # Libraries only the dropped parts (or modules Hearth never imports) link to: libQt6Quick.so.6
    # (Linux), Qt6Quick.dll (Windows), QtQuick.framework (macOS).
    r"(^|/)(lib)?Qt6?(Qml|Quick|Pdf|Labs|Lottie|Designer|Help|UiTools|Test|Sql|PrintSupport|"
    r"EglFS|EglFsKms|OpenGLWidgets|VirtualKeyboard|WaylandCompositor|WaylandEglCompositor|"
    r"WlShellIntegration|ShaderTools|3D|Charts|DataVisualization|Graphs|Multimedia|"
    r"WebEngine|WebChannel|WebSockets|Positioning|Location|Sensors|SerialPort|Bluetooth|"
    r"Nfc|RemoteObjects|Scxml|StateMachine|TextToSpeech|HttpServer|SpatialAudio)"
    r"[^/]*(\.so|\.dll|\.dylib|\.framework/|$)",
]
_DROP_RE = re.compile("|".join(f"(?:{p})" for p in _DROP))


def keep(destination: str) -> bool:
    """Whether a collected file (its path inside the bundle) goes into the bundle."""
    return not _DROP_RE.search(destination.replace("\\", "/"))


def needed_libraries(path: str) -> list[str]:
    """The shared libraries an ELF file names as NEEDED (``readelf``, from binutils, which
    PyInstaller needs on Linux anyway)."""
    out = subprocess.run(
        ["readelf", "-d", path], capture_output=True, text=True, check=False
    ).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def prune_unneeded(binaries: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Linux: drop the system libraries at the bundle's top level that no kept file needs any
    more (those PyInstaller collected for the plugins and modules dropped by ``keep``).

    Everything inside a package folder (Python modules, Qt plugins, llama.cpp's libraries),
    extension modules, links and libpython stay, and so does every library they need,
    transitively.
    """

    def is_root(dest: str, kind: str) -> bool:
        return "/" in dest or kind != "BINARY" or dest.startswith("libpython")

    top = {dest: src for dest, src, kind in binaries if not is_root(dest, kind)}
    todo = [src for dest, src, kind in binaries if is_root(dest, kind) and kind != "SYMLINK"]
    reached: set[str] = set()
    while todo:
        for name in needed_libraries(todo.pop()):
            if name in top and name not in reached:
                reached.add(name)
                todo.append(top[name])
    return [entry for entry in binaries if is_root(entry[0], entry[2]) or entry[0] in reached]
