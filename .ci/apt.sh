# apt_install TAG WHAT PACKAGE...: installs Debian packages for a CI service (as root, or through `sudo -n`).
# Returns 2 without installing when apt-get or root is missing (the tests that need WHAT then skip, saying
# why), 1 when the install fails. Sourced by .ci/postgres.sh and .ci/browser.sh.
apt_install() {
  local tag=$1 what=$2 sudo=""
  shift 2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "[$tag] $what is not installed and apt-get is not available: the tests that need it will be skipped" >&2
    return 2
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
      echo "[$tag] $what is not installed and installing it needs root (no sudo): the tests that need it will be skipped" >&2
      return 2
    fi
  fi
  echo "[$tag] installing Debian's $*" >&2
  $sudo apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null || return 1
}
