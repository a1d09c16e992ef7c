# Sourced by the scripts: a virtualenv in $VENV (.venv) with the project installed (extras in
# $EXTRAS).
# Works on a fresh Debian with Python 3.11+: installs python3-venv via apt when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "roomlogs needs Python 3.11 or newer as '$PYTHON' (set PYTHON=...)" >&2
    exit 1
fi

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "please install: $*" >&2
        return 1
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python${ver}-venv" || apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi

stamp="$VENV/.installed-${EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    spec="."
    [ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
    "$VENV/bin/python" -m pip install -q -e "$spec"
    touch "$stamp"
fi

# What the tests start for real (installed from Debian's packages when missing): redis-server,
# Chromium for the viewer tests (never a downloaded browser), nginx as the load balancer,
# Node.js and npm for clients/js.
test_binaries() {
    command -v redis-server >/dev/null || apt_install redis-server redis-tools
    { command -v node && command -v npm; } >/dev/null || apt_install nodejs npm
    [ -x /usr/bin/chromium ] || apt_install chromium
    [ -x /usr/sbin/nginx ] || apt_install nginx
    command -v openssl >/dev/null || apt_install openssl  # scripts/dev-cert (nginx TLS tests)
}
