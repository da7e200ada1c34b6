#!/usr/bin/env bash
# Install stemserver (system packages, a virtualenv in .venv) and run the main job.
# Until the default model ships, the main job is the installation self-check.
source "$(dirname "$0")/_setup.sh"
install_system_packages ffmpeg:ffmpeg
install_python_packages "text"
exec "$VENV/bin/stemserver" doctor "$@"
