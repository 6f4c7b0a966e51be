#!/usr/bin/env bash
# Installs what building and testing orch need on Debian (bookworm or later)
# and downloads the Go modules. Idempotent: apt is touched only when a
# package is missing, so a second run costs a few dpkg queries.
set -euo pipefail

packages=(
	gcc libc6-dev                               # cgo, static amd64 build
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross # static arm64 cross build
	qemu-user-static                            # run the arm64 binary in tests
	busybox-static                              # test container images
	nftables iproute2                           # service proxy, pod network (e2e)
	util-linux bsdutils                         # nsenter, script (netns e2e, kubectl exec -it)
	etcd-server etcd-client                     # benchmark peer
	shellcheck                                  # lint the installer scripts
	curl                                        # the installer one-liner (install e2e test)
	dnsmasq-base                                # DNS benchmark peer (dnsbench)
)

if ! command -v go >/dev/null 2>&1; then
	echo "install-deps: go is not on PATH; install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or later from https://go.dev/dl/" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo)
	fi
	echo "install-deps: installing ${missing[*]}"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

go mod download
