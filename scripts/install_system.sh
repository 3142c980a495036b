#!/usr/bin/env bash
# System packages spoofrl uses: the ones its commands run, listed with what needs them in
# src/spoofrl/prereqs.py (ffmpeg; espeak-ng, flite, festival and three festival voices for the benchmark's
# TTS spoofs; `spoofrl demo`, `data fetch` and `data synth` check them first), plus Debian's chromium +
# chromium-driver for the browser test of `spoofrl serve`. tests/test_fetch_heal.py keeps the lists together.
# Skips apt entirely when everything is already there.
set -euo pipefail
pkgs="ffmpeg espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts chromium chromium-driver"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
