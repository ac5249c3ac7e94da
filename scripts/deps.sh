#!/usr/bin/env bash
# Installs what cunicorn needs from Debian's packages, only what is missing.
#   scripts/deps.sh build      compiler, libpython, zlib, OpenSSL, pkg-config
#   scripts/deps.sh test       + pytest, curl, procps, util-linux (unshare),
#                              the ASGI apps' frameworks and clients, Debian's
#                              gunicorn (the drop-in tests compare with it),
#                              nginx (in front of the uWSGI protocol's tests),
#                              the openssl CLI (the TLS tests' certificates)
#   scripts/deps.sh container  + podman, runc, podman-compose, debootstrap
#   scripts/deps.sh bench      + wrk, uWSGI (python3 plugin), Debian's gunicorn,
#                              uvicorn (with httptools), valgrind (asgi_instr.py),
#                              the openssl CLI (tls.py's certificate)
# Each dependency and why it is there is listed in README.md.
set -euo pipefail

want=(build-essential pkg-config libpython3-dev zlib1g-dev libssl-dev python3)
for group in "$@"; do
  case "$group" in
    build) ;;
    test) want+=(python3-pytest curl procps util-linux clang libclang-rt-14-dev iproute2
                 python3-starlette python3-fastapi python3-multipart python3-httpx
                 python3-uvloop python3-websockets python3-gunicorn nginx-light
                 python3-pastedeploy openssl) ;;
    container) want+=(podman runc podman-compose debootstrap uidmap fuse-overlayfs) ;;
    bench) want+=(wrk uwsgi-core uwsgi-plugin-python3 python3-gunicorn nginx-light
                  python3-uvicorn python3-httptools python3-fastapi python3-uvloop valgrind
                  openssl) ;;
    *) echo "deps.sh: unknown group '$group' (build, test, container, bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
