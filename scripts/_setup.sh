# Shared set-up for scripts/run.sh and scripts/test.sh (sourced, not run).
# Installs the system packages named in $SYSTEM_PACKAGES when missing, then a virtualenv in .venv
# with stemserver and the extras named in $EXTRAS, torch pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VENV=${STEMSERVER_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
# Another package manager (on desktops often unattended-upgrades) holding one of these made the install
# fail at once with "Unable to acquire the dpkg frontend lock": wait for them, up to the timeout (s).
PACKAGE_LOCKS=${STEMSERVER_APT_LOCKS:-/var/lib/dpkg/lock-frontend /var/lib/apt/lists/lock}
PACKAGE_LOCK_TIMEOUT=${STEMSERVER_APT_LOCK_TIMEOUT:-600}

lock_holder() {  # arg: a lock file; prints the id of the process holding a lock on it, or nothing.
                 # /proc/locks lists every flock/fcntl lock as MAJOR:MINOR:INODE (hex:hex:decimal), readable
                 # without root, unlike the root-owned lock files themselves.
    [ -e "$1" ] && [ -r /proc/locks ] || return 0
    local id
    id=$(stat -L -c '%Hd %Ld %i' "$1" 2>/dev/null | awk '{printf "%02x:%02x:%s", $1, $2, $3}') || return 0
    awk -v id="$id" '$2 != "->" && $6 == id {print $5; exit}' /proc/locks
}

wait_for_package_locks() {  # returns once no other process holds $PACKAGE_LOCKS; exits 1 after the timeout
    local waited=0 told="" lock pid
    while :; do
        pid=""
        for lock in $PACKAGE_LOCKS; do
            pid=$(lock_holder "$lock")
            [ -n "$pid" ] && break
        done
        [ -z "$pid" ] && return 0
        if [ -z "$told" ]; then
            echo "waiting up to ${PACKAGE_LOCK_TIMEOUT} s for $lock, held by process $pid" \
                "($(ps -o comm= -p "$pid" 2>/dev/null || echo "?")): another package manager is running" \
                "(STEMSERVER_APT_LOCK_TIMEOUT sets how long to wait)"
            told=1
        fi
        if [ "$waited" -ge "$PACKAGE_LOCK_TIMEOUT" ]; then
            echo "error: $lock is still held by process $pid after ${PACKAGE_LOCK_TIMEOUT} s; let that package" \
                "manager finish (or stop it), then run this script again" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

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
        # apt's own lock timeout covers a package manager that starts between the wait and apt-get.
        local apt=(apt-get -o "DPkg::Lock::Timeout=$PACKAGE_LOCK_TIMEOUT")
        wait_for_package_locks
        $sudo "${apt[@]}" update -qq
        wait_for_package_locks
        DEBIAN_FRONTEND=noninteractive $sudo "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null
    elif command -v brew >/dev/null 2>&1; then
        local formulae=()
        for package in "${missing[@]}"; do
            case $package in
                fluidsynth) formulae+=(fluid-synth) ;;
                fluid-soundfont-gm) echo "note: no Homebrew soundfont; pass any General MIDI .sf2 with --soundfont" ;;
                musescore-general-soundfont|timgm6mb-soundfont|csound-soundfont|hydrogen-drumkits)
                    echo "note: no Homebrew package for $package; the popular corpus's tests that need it skip" ;;
                chromium|chromium-driver)
                    echo "note: the browser tests drive Debian's /usr/bin/chromium; without it they skip" ;;
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
