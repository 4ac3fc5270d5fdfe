#!/usr/bin/env bash
# Install Debian's Chromium (and a colour emoji font, so the playground page renders Discord's emoji) for the
# playground's browser tests. Playwright drives /usr/bin/chromium via executable_path; nothing downloads a browser.
# Idempotent: does nothing when both are already installed.
set -euo pipefail

EMOJI_FONT=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
if [[ -x /usr/bin/chromium && -f "$EMOJI_FONT" ]]; then
    exit 0
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-noto-color-emoji
/usr/bin/chromium --version
