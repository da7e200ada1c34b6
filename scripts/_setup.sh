# Shared set-up for scripts/run.sh and scripts/test.sh (sourced, not run).
# Installs the system packages named in $SYSTEM_PACKAGES when missing, then a virtualenv in .venv
# with stemserver and the extras named in $EXTRAS, torch pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VENV=${STEMSERVER_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

install_system_packages() {  # args: PACKAGE:COMMAND pairs; installs PACKAGE when COMMAND is missing
    local missing=()
    for pair in "$@"; do
        local package=${pair%%:*} command=${pair#*:}
        command -v "$command" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if command -v apt-get >/dev/null 2>&1; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        echo "installing system packages: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v brew >/dev/null 2>&1; then
        echo "installing with Homebrew: ${missing[*]}"
        brew install "${missing[@]}"
    else
        echo "warning: cannot install ${missing[*]} (no apt-get or brew); some features and tests will fail" >&2
    fi
}

install_python_packages() {  # args: pip extras, e.g. "text,test"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[$1]"
}
