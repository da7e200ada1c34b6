#!/usr/bin/env bash
# Install stemserver (system packages, a virtualenv in .venv) and start the server on the bundled
# default model; on its first start it copies the demo library to ~/.local/share/stemserver/demo
# and indexes it. Arguments go to `stemserver serve` (e.g. --osc-port 9100, --library DIR).
source "$(dirname "$0")/_setup.sh"
install_system_packages ffmpeg:ffmpeg
install_python_packages "text,preview"
exec "$VENV/bin/stemserver" serve "$@"
