#!/bin/sh
# Put Hearth in your desktop's application menu: run this from the unpacked hearth folder.
# Nothing is copied but the menu entry and the icon; Hearth runs from this folder (move the
# folder, run this again). ./install.sh --uninstall removes the entry and the icon.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
apps=${XDG_DATA_HOME:-$HOME/.local/share}/applications
icons=${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor
if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$apps/hearth.desktop"
  find "$icons" -path '*/apps/hearth.*' -delete 2>/dev/null || true
  echo "Hearth removed from the application menu (its folder and your chats are untouched)."
  exit 0
fi
mkdir -p "$apps"
for dir in "$here"/icons/hicolor/*/apps; do
  size=$(basename "$(dirname "$dir")")
  mkdir -p "$icons/$size/apps"
  cp "$dir"/hearth.* "$icons/$size/apps/"
done
sed -e "s|^Exec=hearth|Exec=\"$here/hearth\"|" -e "s|^TryExec=hearth|TryExec=$here/hearth|" \
  "$here/hearth.desktop" > "$apps/hearth.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
echo "Hearth is in your application menu. Start it there, or run: $here/hearth"
