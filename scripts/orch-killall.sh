#!/bin/sh
# orch-killall.sh stops orch and everything it started on this machine, as
# k3s-killall.sh does for k3s: the orch services, every pod's processes
# (under orch's cgroup root and in the services' cgroups, where the shims
# outlive a stopped service), the mounts under orch's data directories and
# /run/orch, the orch0 bridge with the pods' veths, the VXLAN device and
# the nftables tables of the pod network and the service proxy. Data,
# settings and the installed files stay: start the service again and the
# node comes back, re-creating its pods. orch-uninstall.sh runs it first.
#
# The data directories and cgroup roots are those named in ORCH_DATA_DIR
# and ORCH_CGROUP_ROOT in the environment, else the services' (the same
# variables in their env files, as the installer wrote them, or the keys
# data-dir and cgroup-root of orch's config file, ORCH_CONFIG or
# /etc/orch/config.yaml), else the defaults /var/lib/orch and /orch.
#
# INSTALL_ORCH_ROOT, as for the installer, is a staging or test root: every
# path is taken under it, and the service manager, network interfaces and
# nftables of this machine, which are not that root's, are left alone.
#
# install.sh carries a copy of this file (write_killall); a test keeps the
# two identical.
set -eu

SELF=orch-killall.sh
ROOT=${INSTALL_ORCH_ROOT:-}
ROOT=${ROOT%/}
SERVICES='orch orch-agent'
ENV_FILES='/etc/systemd/system/orch.service.env /etc/systemd/system/orch-agent.service.env /etc/orch/orch.env /etc/orch/orch-agent.env'

for a in "$@"; do
	case $a in
	-h | --help)
		echo "usage: $SELF   (stops orch and all its pods, mounts, interfaces and nftables tables; keeps data and files)"
		exit 0
		;;
	*)
		echo "$SELF: unknown argument $a" >&2
		exit 2
		;;
	esac
done
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
	echo "$SELF: run as root" >&2
	exit 1
fi

quiet() { "$@" >/dev/null 2>&1 || true; }

# settings KEY CONFIG_KEY DEFAULT prints the values of KEY in the
# environment, or in the services' env files (KEY='VALUE' lines) and of
# CONFIG_KEY in the config file (CONFIG_KEY: VALUE, optionally quoted), one
# a line, else DEFAULT. The files are read, not sourced: nothing in them
# runs.
settings() {
	eval "v=\${$1:-}"
	if [ -n "$v" ]; then
		printf '%s\n' "$v"
		return
	fi
	found=
	for f in $ENV_FILES; do
		f=$ROOT$f
		[ -r "$f" ] || continue
		v=$(sed -n "s/^$1='\(.*\)'\$/\1/p" "$f" | tail -n 1)
		[ -z "$v" ] || found="$found$v
"
	done
	f=$ROOT${ORCH_CONFIG:-/etc/orch/config.yaml}
	if [ -r "$f" ]; then
		v=$(sed -n "s/^$2:[[:space:]]*[\"']\{0,1\}\([^\"'#]*[^\"'#[:space:]]\).*/\1/p" "$f" | tail -n 1)
		[ -z "$v" ] || found="$found$v
"
	fi
	if [ -n "$found" ]; then
		printf '%s' "$found" | sort -u
	else
		printf '%s\n' "$3"
	fi
}

DATA_DIRS=$(settings ORCH_DATA_DIR data-dir /var/lib/orch)
CGROUP_ROOTS=$(settings ORCH_CGROUP_ROOT cgroup-root /orch)

HOST=true
[ -z "$ROOT" ] || HOST=false

echo "[INFO]  stopping the orch services"
[ "$HOST" = true ] || SERVICES=
for s in $SERVICES; do
	if [ -d /run/systemd/system ] && [ -f "/etc/systemd/system/$s.service" ] && command -v systemctl >/dev/null 2>&1; then
		quiet systemctl stop "$s"
	elif [ -x "/etc/init.d/$s" ] && command -v rc-service >/dev/null 2>&1; then
		quiet rc-service "$s" stop
	fi
done

# kill_cgroup kills every process in a cgroup tree and removes its
# directories (cgroup v2, and each v1 hierarchy alike: every directory
# lists its processes in cgroup.procs).
kill_cgroup() {
	[ -d "$1" ] || return 0
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		pids=$(find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
		[ -n "$pids" ] || break
		# shellcheck disable=SC2086
		quiet kill -9 $pids
		sleep 1
	done
	find "$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
}

echo "[INFO]  killing the pods' processes"
for cg in "$ROOT/sys/fs/cgroup" "$ROOT"/sys/fs/cgroup/*; do
	[ -d "$cg" ] || continue
	printf '%s\n' "$CGROUP_ROOTS" | while IFS= read -r r; do
		kill_cgroup "$cg$r"
	done
	for s in orch orch-agent; do
		kill_cgroup "$cg/system.slice/$s.service"
	done
done

# Unmount everything under the data dirs and /run/orch, deepest first:
# container root file systems, volumes. /proc/self/mounts escapes spaces
# and other blanks as octal (\040).
echo "[INFO]  unmounting"
printf '%s\n' "$DATA_DIRS" /run/orch | while IFS= read -r d; do
	d=$ROOT${d%/}
	# /proc/self/mounts writes a blank in a path as \040; ENVIRON, unlike
	# awk -v, takes the value without escapes.
	D=$(printf '%s' "$d" | sed 's/ /\\040/g') awk 'BEGIN { d = ENVIRON["D"] } $2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts |
		sort -r | while read -r m; do
		quiet umount -l "$(printf '%b' "$m")"
	done
done
rm -rf "$ROOT/run/orch"

if [ "$HOST" = false ]; then
	echo "[INFO]  INSTALL_ORCH_ROOT is set: network interfaces and nftables tables are left alone"
	exit 0
fi
echo "[INFO]  removing network interfaces and nftables tables"
if command -v ip >/dev/null 2>&1; then
	# The pods' veths are gone with their network namespaces; any left
	# hang on the bridge.
	for l in $(ip -o link show master orch0 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		quiet ip link delete "$l"
	done
	quiet ip link delete orch0
	for l in $(ip -o link show type vxlan 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		case $l in
		orch.* | flannel.*) quiet ip link delete "$l" ;;
		esac
	done
fi
if command -v nft >/dev/null 2>&1; then
	# The service proxy's table (netproxy/proxy), the pod network's
	# masquerade table (netproxy/podnet) and the network policies' table
	# (netproxy/netpol).
	for t in 'ip orch' 'ip orch-podnet' 'ip orch-netpol' 'ip6 orch'; do
		# shellcheck disable=SC2086
		quiet nft delete table $t
	done
fi
echo "[INFO]  orch is stopped; its data and files are kept"
