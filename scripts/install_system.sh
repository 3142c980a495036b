#!/usr/bin/env bash
# System packages spoofrl uses: speech sources for the built-in benchmark (espeak-ng, flite, festival),
# codecs (ffmpeg, sox) and, for the browser test of `spoofrl serve`, Debian's chromium + chromedriver.
# Skips apt entirely when everything is already there.
set -euo pipefail
pkgs="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts ffmpeg sox chromium chromium-driver"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
