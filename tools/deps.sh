# Sourced by tools/run, tools/test and tools/bench: installs the Debian packages faultline needs.
# As root it runs apt-get; otherwise it names what to install and stops.

FAULTLINE_PACKAGES=(cmake g++ make pkg-config libuv1-dev libfmt-dev libcxxopts-dev
  libtomlplusplus-dev nlohmann-json3-dev node-llhttp libgtest-dev libbenchmark-dev redis-server
  redis-tools python3 python3-redis python3-pytest python3-pytest-asyncio python3-venv
  python3-setuptools python3-pip curl clang libclang-rt-14-dev golang-go)

faultline_install_deps() {
  local missing=() extra=("$@")
  for p in "${FAULTLINE_PACKAGES[@]}" "${extra[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Node and npm (for the Toxiproxy and ioredis client tests) may come from elsewhere than
  # Debian (the machine image ships its own); only install Debian's when there is none.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "faultline: missing packages: ${missing[*]}" >&2
    echo "faultline: install them with: sudo apt-get install ${missing[*]}" >&2
    return 1
  fi
  echo "faultline: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
