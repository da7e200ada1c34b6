# Shared set-up for scripts/run.sh and scripts/test.sh (sourced, not run).
# Installs the system packages named in $SYSTEM_PACKAGES when missing, then a virtualenv in .venv
# with stemserver and the extras named in $EXTRAS, torch pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VENV=${STEMSERVER_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

install_system_packages() {  # args: PACKAGE:CHECK pairs; installs the Debian PACKAGE when CHECK
                             # (a command name, an absolute path, or lib:SONAME) is missing
    local missing=()
    for pair in "$@"; do
        local package=${pair%%:*} check=${pair#*:}
        if [[ $check == /* ]]; then [ -e "$check" ] && continue
        elif [[ $check == lib:* ]]; then ldconfig -p 2>/dev/null | grep -q "${check#lib:}" && continue
        else command -v "$check" >/dev/null 2>&1 && continue; fi
        missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if command -v apt-get >/dev/null 2>&1; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        echo "installing system packages: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v brew >/dev/null 2>&1; then
        local formulae=()
        for package in "${missing[@]}"; do
            case $package in
                fluidsynth) formulae+=(fluid-synth) ;;
                fluid-soundfont-gm) echo "note: no Homebrew soundfont; pass any General MIDI .sf2 with --soundfont" ;;
                liblo-tools) formulae+=(liblo) ;;
                jackd2) formulae+=(jack) ;;
                libportaudio2) formulae+=(portaudio) ;;
                lua5.4) formulae+=(lua) ;;
                *) formulae+=("$package") ;;
            esac
        done
        [ ${#formulae[@]} -gt 0 ] && brew install "${formulae[@]}"
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
