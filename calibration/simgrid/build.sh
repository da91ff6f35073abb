#!/bin/sh
# Builds the SimGrid peer driver (driver.cpp) against Debian's libsimgrid-dev.
#   calibration/simgrid/build.sh [OUT]   (default /var/tmp/memfabric-simgrid-driver)
# Exits 3 with a message when libsimgrid-dev or g++ is missing.
set -eu
here=$(dirname "$0")
out=${1:-/var/tmp/memfabric-simgrid-driver}
if ! command -v g++ >/dev/null 2>&1; then echo "g++ is missing (apt-get install g++)" >&2; exit 3; fi
if [ ! -e /usr/include/simgrid/plugins/live_migration.h ]; then
  echo "libsimgrid-dev is missing (apt-get install libsimgrid-dev)" >&2; exit 3
fi
g++ -std=c++17 -O2 -o "$out" "$here/driver.cpp" -lsimgrid
echo "$out"
