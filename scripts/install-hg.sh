#!/usr/bin/env bash
# Install real Mercurial 6.0 and 7.2.4 (test peers only) into virtualenvs in a cache
# directory outside the repository; reused when already present.
#   HGWIRE_CACHE (default ~/.cache/hgwire)/hg-6.0/bin/hg, .../hg-7.2.4/bin/hg
set -euo pipefail
cache="${HGWIRE_CACHE:-$HOME/.cache/hgwire}"
py="${PYTHON:-python3}"
mkdir -p "$cache"
install_one() {
  local version="$1" dest="$cache/hg-$1"
  # .installed is written last, so a half-finished install is redone.
  if [ -f "$dest/.installed" ] && [ -x "$dest/bin/hg" ]; then
    return 0
  fi
  echo "installing Mercurial $version into $dest (source build, a few minutes)" >&2
  rm -rf "$dest"
  "$py" -m venv "$dest"
  "$dest/bin/pip" install -q --disable-pip-version-check "mercurial==$version"
  HGRCPATH= "$dest/bin/hg" version -q | grep -q "version $version"
  touch "$dest/.installed"
}
install_one 6.0 &
p1=$!
install_one 7.2.4 &
p2=$!
wait $p1
wait $p2
echo "$cache/hg-6.0/bin/hg"
echo "$cache/hg-7.2.4/bin/hg"
