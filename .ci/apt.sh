#!/usr/bin/env bash
# Install the missing system packages of .ci/apt-packages.txt (Debian/Ubuntu); a no-op without apt-get.
# Root runs apt-get directly, anyone else through sudo. DEBIAN_FRONTEND is exported, never put in front of
# "$SUDO" (with SUDO empty that would run the assignment as a command: exit 127).
set -euo pipefail
cd "$(dirname "$0")/.."
list=.ci/apt-packages.txt
[ -f "$list" ] || exit 0
command -v apt-get >/dev/null || { echo "apt.sh: no apt-get on this machine; install the packages of $list by hand" >&2; exit 0; }
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "apt.sh: not root and no sudo; install the packages of $list as root" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
missing=()
while read -r package; do
  case "$package" in ''|'#'*) continue ;; esac
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done < "$list"
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "apt.sh: installing ${#missing[@]} system package(s): ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
