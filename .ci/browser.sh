# Headless Chromium for tests/test_browser.py: sourced by .ci/run (or by hand, then `browser_install`).
#
# browser_install: if no chromium binary is on PATH (chromium, chromium-browser, google-chrome), installs
#   Debian's `chromium` package (apt-get, as root or through sudo) and exports GENIXER_CHROMIUM with the
#   binary's path, which tests/test_browser.py uses. Returns 2 without installing when apt-get or root is
#   missing (the browser test then skips, saying why); any other failure returns 1.

. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

_br_say() { echo "[browser] $*" >&2; }

_br_find() {
  local b
  for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}

browser_install() {
  local bin
  if bin=$(_br_find); then
    export GENIXER_CHROMIUM=$bin
    _br_say "using $bin ($("$bin" --version 2>/dev/null | head -n 1))"
    return 0
  fi
  apt_install browser Chromium chromium fonts-dejavu-core || return $?
  bin=$(_br_find) || { _br_say "no chromium binary after installing"; return 1; }
  export GENIXER_CHROMIUM=$bin
  _br_say "installed $bin ($("$bin" --version 2>/dev/null | head -n 1))"
}
