#!/bin/sh
# Install the Debian packages the lab needs, only those that are missing.
set -eu
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v keepalived >/dev/null 2>&1 || need="$need keepalived"
command -v arping >/dev/null 2>&1 || need="$need iputils-arping"
command -v tcpdump >/dev/null 2>&1 || need="$need tcpdump"
command -v nft >/dev/null 2>&1 || need="$need nftables"
command -v tc >/dev/null 2>&1 || need="$need iproute2"
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v promtool >/dev/null 2>&1 || need="$need prometheus" # promtool checks the alert rules
command -v tshark >/dev/null 2>&1 || need="$need tshark" # an independent decoder reads the lab's captures
command -v curl >/dev/null 2>&1 || need="$need curl" # keepalived's kubelet check in the import test
command -v python3 >/dev/null 2>&1 || need="$need python3" # health endpoints in the lab
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd" # verifies the unit
command -v qemu-aarch64-static >/dev/null 2>&1 || need="$need qemu-user-static" # runs the arm64 build
# the image, built with buildah, run by containerd under the lab's kubelet
command -v buildah >/dev/null 2>&1 || need="$need buildah"
command -v containerd >/dev/null 2>&1 || need="$need containerd"
command -v runc >/dev/null 2>&1 || need="$need runc"
command -v nsenter >/dev/null 2>&1 || need="$need util-linux"
# keepalived 2.4.3, built from ../shared for the auth_hmac interop tests
command -v autoreconf >/dev/null 2>&1 || need="$need autoconf automake libtool"
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 || need="$need build-essential"
for lib in libssl-dev libnl-3-dev libnl-genl-3-dev; do
  dpkg -s "$lib" >/dev/null 2>&1 || need="$need $lib"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing packages:$need (install them as root: apt-get install$need)" >&2
  exit 1
fi
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $need >/dev/null
