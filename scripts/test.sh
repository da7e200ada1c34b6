#!/usr/bin/env bash
# Install everything the tests need (system packages, a virtualenv in .venv) and run the whole
# test suite. Extra arguments go to pytest, e.g. scripts/test.sh -k audio -x
source "$(dirname "$0")/_setup.sh"
install_system_packages ffmpeg:ffmpeg fluidsynth:fluidsynth fluid-soundfont-gm:/usr/share/sounds/sf2/FluidR3_GM.sf2 \
    liblo-tools:oscsend jackd2:jackd libportaudio2:lib:libportaudio.so.2 lua5.4:lua5.4 \
    musescore-general-soundfont:/usr/share/sounds/sf3/MuseScore_General_Full.sf3 \
    timgm6mb-soundfont:/usr/share/sounds/sf2/TimGM6mb.sf2 csound-soundfont:/usr/share/sounds/sf2/sf_GMbank.sf2 \
    hydrogen-drumkits:/usr/share/hydrogen/data/drumkits \
    chromium:/usr/bin/chromium chromium-driver:/usr/bin/chromedriver
install_python_packages "text,test"
exec "$VENV/bin/python" -m pytest "$@"
