#!/bin/sh
# Installs orch as a service, the way k3s' installer does:
#
#   curl -sfL https://HOST/install.sh | sh -                     # a server
#   curl -sfL https://HOST/install.sh | ORCH_URL=https://SERVER:6443 \
#       ORCH_TOKEN=TOKEN sh -                                     # an agent
#   curl -sfL https://HOST/install.sh | sh -s - agent --join URL --token T
#
# Arguments after `sh -s -` are the command (server or agent) and its flags;
# --join/--url and --token go into the service's environment file (mode
# 0600) rather than the unit, so the token is not world-readable.
#
# Environment:
#   ORCH_URL, ORCH_JOIN      server to join; makes this an agent install
#   ORCH_TOKEN               join token (agents: required)
#   ORCH_*                   any other orch setting, copied into the env file
#   INSTALL_ORCH_VERSION     release to install, e.g. v0.1.0 (default: latest)
#   INSTALL_ORCH_BASE_URL    where releases live (default: GitHub releases);
#                            files are BASE/download/VERSION/orch-ARCH and
#                            BASE/download/VERSION/sha256sum-ARCH.txt, or
#                            BASE/latest/download/... without a version
#   INSTALL_ORCH_SKIP_DOWNLOAD=true   use the binary already in the bin dir
#                            (air-gapped installs)
#   INSTALL_ORCH_BIN_DIR     where orch, orch-killall.sh and the uninstaller go
#                            (/usr/local/bin)
#   INSTALL_ORCH_EXEC        command and/or extra flags for the service
#   INSTALL_ORCH_INIT        systemd, openrc or none (default: detected)
#   INSTALL_ORCH_SKIP_ENABLE=true     do not enable the service at boot
#   INSTALL_ORCH_SKIP_START=true      do not (re)start the service
#   INSTALL_ORCH_SKIP_CHECKS=true     install even if the kernel checks (and
#                            `orch check-config`, run before installing) fail
#   INSTALL_ORCH_ROOT        prefix for every path written or removed (a
#                            staging or test root); no root check when set
#
# Re-running upgrades in place. Nothing is changed until the checks pass and
# the new binary is downloaded and verified, so a failed run leaves the old
# install working.
set -eu

ROOT=${INSTALL_ORCH_ROOT:-}
ROOT=${ROOT%/}
BIN_DIR=${INSTALL_ORCH_BIN_DIR:-/usr/local/bin}
BASE_URL=${INSTALL_ORCH_BASE_URL:-https://github.com/orch-dev/orch/releases}
BASE_URL=${BASE_URL%/}
VERSION=${INSTALL_ORCH_VERSION:-}
SYSTEMD_DIR=/etc/systemd/system
OPENRC_DIR=/etc/init.d
CONFIG_DIR=/etc/orch
DATA_DIR=/var/lib/orch

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
	echo "[ERROR] $*" >&2
	exit 1
}

is_true() {
	case ${1:-} in
	true | TRUE | True | yes | 1) return 0 ;;
	*) return 1 ;;
	esac
}

# --- arguments -------------------------------------------------------------

# parse_args splits the command line into the command, the join URL and
# token (which belong in the env file), and the remaining flags.
CMD=
JOIN_URL=${ORCH_URL:-${ORCH_JOIN:-}}
TOKEN=${ORCH_TOKEN:-}
FLAGS=

# quote prints $1 in single quotes, the form both sh and systemd accept.
quote() {
	case $1 in
	*\'*) fatal "single quotes are not supported in arguments: $1" ;;
	esac
	printf "'%s'" "$1"
}

add_flag() {
	FLAGS="$FLAGS $(quote "$1")"
}

parse_args() {
	# The command may come first in the arguments or in INSTALL_ORCH_EXEC,
	# which is split on white space like k3s' INSTALL_K3S_EXEC.
	case ${1:-} in
	server | agent)
		CMD=$1
		shift
		;;
	esac
	# shellcheck disable=SC2086
	set -- ${INSTALL_ORCH_EXEC:-} "$@"
	case ${1:-} in
	server | agent)
		[ -z "$CMD" ] || [ "$CMD" = "$1" ] || fatal "the arguments say $CMD but INSTALL_ORCH_EXEC says $1"
		CMD=$1
		shift
		;;
	esac
	while [ $# -gt 0 ]; do
		case $1 in
		--join | --url | --server | --token)
			[ $# -ge 2 ] || fatal "$1 needs a value"
			case $1 in
			--token) TOKEN=$2 ;;
			*) JOIN_URL=$2 ;;
			esac
			shift 2
			continue
			;;
		--join=* | --url=* | --server=*) JOIN_URL=${1#*=} ;;
		--token=*) TOKEN=${1#*=} ;;
		*) add_flag "$1" ;;
		esac
		shift
	done
	if [ -z "$CMD" ]; then
		if [ -n "$JOIN_URL" ]; then
			CMD=agent
		elif [ -e "$ROOT$BIN_DIR/orch-agent-uninstall.sh" ] && [ ! -e "$ROOT$BIN_DIR/orch-uninstall.sh" ]; then
			# Re-running the plain one-liner on an agent upgrades the agent
			# rather than turning the machine into a server.
			CMD=agent
			info "upgrading the orch agent installed here"
		else
			CMD=server
		fi
	fi
	SERVICE=orch
	UNINSTALL=orch-uninstall.sh
	if [ "$CMD" = agent ]; then
		SERVICE=orch-agent
		UNINSTALL=orch-agent-uninstall.sh
	fi
}

# env_value KEY FILE prints KEY's value from an env file the installer
# wrote (KEY='VALUE' lines).
env_value() {
	[ -f "$2" ] || return 0
	sed -n "s/^$1='\(.*\)'\$/\1/p" "$2" | tail -n 1
}

# validate_args completes the join URL and token from the previous install,
# so a re-run needs neither, and checks them.
validate_args() {
	[ -n "$JOIN_URL" ] || [ "$CMD" != agent ] || JOIN_URL=$(env_value ORCH_JOIN "$ROOT$ENV_FILE")
	[ -n "$TOKEN" ] || TOKEN=$(env_value ORCH_TOKEN "$ROOT$ENV_FILE")
	if [ "$CMD" = agent ]; then
		[ -n "$JOIN_URL" ] || fatal "an agent needs the server's URL: set ORCH_URL or pass --join https://SERVER:6443"
		[ -n "$TOKEN" ] || fatal "an agent needs the join token: set ORCH_TOKEN or pass --token (the server prints it; it is in $DATA_DIR/server/token)"
		case $JOIN_URL in
		https://*) ;;
		*) fatal "the server URL must start with https://, got: $JOIN_URL" ;;
		esac
	else
		[ -z "$JOIN_URL" ] || fatal "ORCH_URL/--join is only for agents; to make this an agent run: sh -s - agent --join $JOIN_URL --token ..."
	fi
}

# --- checks ----------------------------------------------------------------

# FIXES collects one line per failed check; all are reported together so the
# user can fix everything in one go.
FIXES=

fix() {
	FIXES="$FIXES
  - $*"
}

# module_available NAME CONFIG reports whether a kernel feature is loaded,
# loadable or built in. Built-in code without parameters has no
# /sys/module entry, hence the look at modules.builtin and the kernel config.
module_available() {
	[ -d "/sys/module/$1" ] && return 0
	if command -v modprobe >/dev/null 2>&1; then
		modprobe -n -q "$1" 2>/dev/null && return 0
	fi
	release=$(uname -r)
	grep -q "/$1\.ko" "/lib/modules/$release/modules.builtin" 2>/dev/null && return 0
	if [ -r /proc/config.gz ] && command -v zcat >/dev/null 2>&1; then
		zcat /proc/config.gz 2>/dev/null | grep -q "^$2=[ym]" && return 0
	fi
	grep -q "^$2=[ym]" "/boot/config-$release" 2>/dev/null
}

memory_cgroup() {
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		grep -qw memory /sys/fs/cgroup/cgroup.controllers && return 0
	fi
	# /proc/cgroups: subsys_name hierarchy num_cgroups enabled
	[ -r /proc/cgroups ] && awk '$1 == "memory" && $4 == 1 { found = 1 } END { exit !found }' /proc/cgroups
}

cmdline_file() {
	for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
		if [ -f "$f" ]; then
			echo "$f"
			return
		fi
	done
	echo "the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub)"
}

preflight() {
	if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
		fatal "run the installer as root (e.g. curl -sfL ... | sudo sh -)"
	fi
	[ "$(uname -s)" = Linux ] || fatal "orch runs on Linux only, this is $(uname -s)"
	command -v sha256sum >/dev/null 2>&1 || fatal "sha256sum is missing (coreutils or busybox)"

	if ! memory_cgroup; then
		fix "the memory cgroup controller is disabled: add 'cgroup_enable=memory cgroup_memory=1' to $(cmdline_file) and reboot"
	fi
	if ! grep -qw overlay /proc/filesystems 2>/dev/null && ! module_available overlay CONFIG_OVERLAY_FS; then
		fix "overlayfs is missing: 'modprobe overlay' shows why; install your distribution's extra kernel modules (Ubuntu on a Raspberry Pi: apt install linux-modules-extra-raspi) or use a kernel with CONFIG_OVERLAY_FS"
	fi
	if ! module_available nf_tables CONFIG_NF_TABLES; then
		fix "nf_tables is missing: 'modprobe nf_tables' shows why; Debian, Ubuntu, Alpine and Raspberry Pi OS kernels have it, custom ones need CONFIG_NF_TABLES"
	fi
	if ! module_available vxlan CONFIG_VXLAN; then
		warn "vxlan is missing: a single node works, but agents on other machines cannot reach its pods (enable CONFIG_VXLAN)"
	fi
	if [ -n "$FIXES" ]; then
		if is_true "${INSTALL_ORCH_SKIP_CHECKS:-}"; then
			warn "continuing despite failed checks (INSTALL_ORCH_SKIP_CHECKS):$FIXES"
		else
			fatal "this machine cannot run orch yet; fix these and run the installer again (or set INSTALL_ORCH_SKIP_CHECKS=true):$FIXES"
		fi
	fi
}

# check_config runs `orch check-config` of the binary about to be used: the
# full checks, of which preflight's are the part a shell can do without the
# binary. It runs before the binary is installed, so a failure changes
# nothing. Not under INSTALL_ORCH_ROOT, where the binary may be for another
# machine.
check_config() {
	[ -z "$ROOT" ] || return 0
	if report=$("$1" check-config 2>&1); then
		info "orch check-config: all required features are present"
		return 0
	fi
	if is_true "${INSTALL_ORCH_SKIP_CHECKS:-}"; then
		warn "continuing despite failed checks (INSTALL_ORCH_SKIP_CHECKS); orch check-config says:
$report"
		return 0
	fi
	fatal "this machine cannot run orch yet; fix the MISSING lines and run the installer again (or set INSTALL_ORCH_SKIP_CHECKS=true). orch check-config says:
$report"
}

# --- download --------------------------------------------------------------

detect_arch() {
	case $(uname -m) in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*) fatal "no orch release for $(uname -m); amd64 and arm64 are published (64-bit Raspberry Pi OS is arm64)" ;;
	esac
}

# download URL FILE fetches with curl or wget; both fail on HTTP errors.
download() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 3 -o "$2" "$1" || fatal "download of $1 failed"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1" || fatal "download of $1 failed"
	else
		fatal "neither curl nor wget is installed"
	fi
}

release_url() {
	if [ -n "$VERSION" ]; then
		echo "$BASE_URL/download/$VERSION/$1"
	else
		echo "$BASE_URL/latest/download/$1"
	fi
}

TMP_DIR=
cleanup() {
	[ -z "$TMP_DIR" ] || rm -rf "$TMP_DIR"
}

# fetch_binary downloads and verifies the release into $TMP_DIR/orch.
fetch_binary() {
	detect_arch
	TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/orch-install.XXXXXX")
	trap cleanup EXIT
	trap 'exit 1' INT TERM HUP
	info "downloading orch ${VERSION:-latest} for $ARCH from $BASE_URL"
	download "$(release_url "sha256sum-$ARCH.txt")" "$TMP_DIR/sha256sum.txt"
	download "$(release_url "orch-$ARCH")" "$TMP_DIR/orch"
	want=$(awk -v f="orch-$ARCH" '{ n = $2; sub(/^\*/, "", n) } n == f { print $1; exit }' "$TMP_DIR/sha256sum.txt")
	[ -n "$want" ] || fatal "sha256sum-$ARCH.txt has no line for orch-$ARCH"
	got=$(sha256sum "$TMP_DIR/orch" | awk '{ print $1 }')
	if [ "$want" != "$got" ]; then
		fatal "checksum mismatch for orch-$ARCH: expected $want, downloaded file has $got; nothing was changed"
	fi
	chmod 0755 "$TMP_DIR/orch"
	# A truncated or wrong-arch binary is caught here, before it replaces a
	# working one. Only possible when the binary runs on this machine.
	if [ -z "$ROOT" ] && ! "$TMP_DIR/orch" version >/dev/null 2>&1; then
		fatal "the downloaded orch does not run on this machine ($(uname -m)); nothing was changed"
	fi
}

# install_binary moves the verified binary into place atomically: a rename in
# the target directory, so a running service keeps its old inode.
install_binary() {
	dest=$ROOT$BIN_DIR/orch
	mkdir -p "$ROOT$BIN_DIR"
	if [ -f "$dest" ] && [ "$(sha256sum "$dest" | awk '{ print $1 }')" = "$(sha256sum "$TMP_DIR/orch" | awk '{ print $1 }')" ]; then
		info "$BIN_DIR/orch is already this version"
		return
	fi
	cp "$TMP_DIR/orch" "$dest.tmp.$$"
	chmod 0755 "$dest.tmp.$$"
	mv -f "$dest.tmp.$$" "$dest"
	info "installed $BIN_DIR/orch"
}

# --- files -----------------------------------------------------------------

# write_file PATH MODE writes stdin to PATH through a temporary file, so a
# reader never sees half a file.
write_file() {
	mkdir -p "$(dirname "$1")"
	(
		umask 077
		cat >"$1.tmp.$$"
	)
	chmod "$2" "$1.tmp.$$"
	mv -f "$1.tmp.$$" "$1"
}

# env_line KEY VALUE prints KEY='VALUE' for the env file.
env_line() {
	case $2 in
	*"'"* | *'
'*) fatal "$1 must not contain quotes or newlines" ;;
	esac
	printf "%s='%s'\n" "$1" "$2"
}

# build_env sets ENV_CONTENT, the service's env file. It runs before any
# change, so a bad value stops the install early (and a variable, unlike a
# pipeline, does not hide the failure).
build_env() {
	ENV_CONTENT=$(
		echo "# Settings of $SERVICE, written by the orch installer. Keys are"
		echo "# orch's ORCH_* environment variables."
		[ -z "$JOIN_URL" ] || env_line ORCH_JOIN "$JOIN_URL"
		[ -z "$TOKEN" ] || env_line ORCH_TOKEN "$TOKEN"
		env | LC_ALL=C sort | while IFS='=' read -r key value; do
			case $key in
			ORCH_URL | ORCH_JOIN | ORCH_TOKEN) ;;
			ORCH_*) env_line "$key" "$value" ;;
			esac
		done
		# Settings of the previous install stay unless set again now.
		if [ -f "$ROOT$ENV_FILE" ]; then
			while IFS= read -r line; do
				key=${line%%=*}
				case $key in
				ORCH_URL | ORCH_JOIN | ORCH_TOKEN | *[!A-Z0-9_]*) continue ;;
				ORCH_*) ;;
				*) continue ;;
				esac
				eval "now=\${$key:-}"
				[ -n "$now" ] || printf '%s\n' "$line"
			done <"$ROOT$ENV_FILE"
		fi
	)
}

write_env() {
	printf '%s\n' "$ENV_CONTENT" | write_file "$ROOT$ENV_FILE" 0600
	info "wrote $ENV_FILE"
}

# exec_args FLAGS prints the service's command line, one quoted word per
# line. FLAGS holds single-quoted words (see quote), so eval only unquotes.
exec_args() {
	echo "$CMD"
	eval "set -- $1"
	for a in "$@"; do
		quote "$a"
		echo
	done
}

write_systemd_unit() {
	what="server (control plane and node)"
	[ "$CMD" = server ] || what="agent (node of $JOIN_URL)"
	{
		cat <<EOF
# Written by the orch installer; re-run it to change this file.
[Unit]
Description=orch $what
Documentation=https://github.com/orch-dev/orch
Wants=network-online.target
After=network-online.target

[Service]
# orch does not speak sd_notify; "exec" at least fails the start when the
# binary cannot be executed.
Type=exec
EnvironmentFile=-$ENV_FILE
# Only orch itself is stopped on restart or upgrade: pods keep running and
# are adopted by the new process.
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe overlay
ExecStartPre=-/sbin/modprobe nf_tables
EOF
		printf 'ExecStart=%s/orch' "$BIN_DIR"
		# systemd expands %, $ and \ escapes in ExecStart; double them to
		# keep them literal.
		exec_args "$FLAGS" | sed -e 's/\\/\\\\/g' -e 's/%/%%/g' -e 's/\$/$$/g' | while IFS= read -r w; do
			printf ' \\\n\t%s' "$w"
		done
		echo
		cat <<EOF

[Install]
WantedBy=multi-user.target
EOF
	} | write_file "$ROOT$UNIT_FILE" 0644
	info "wrote $UNIT_FILE"
}

write_openrc_script() {
	# command_args is a double-quoted sh string that openrc-run evals: escape
	# what double quotes would expand; the single quotes survive for eval.
	args=$(exec_args "$FLAGS" | sed 's/[\\"$`]/\\&/g' | tr '\n' ' ')
	write_file "$ROOT$UNIT_FILE" 0755 <<EOF
#!/sbin/openrc-run
# shellcheck shell=sh disable=SC2034,SC1091
# (openrc-run reads the variables; the env file exists only at run time.)
# Written by the orch installer; re-run it to change this file.

set -o allexport
if [ -f "$ENV_FILE" ]; then . "$ENV_FILE"; fi
set +o allexport

description="orch $CMD"
supervisor=supervise-daemon
command="$BIN_DIR/orch"
command_args="${args% }"
output_log="/var/log/$SERVICE.log"
error_log="/var/log/$SERVICE.log"
pidfile="/var/run/$SERVICE.pid"
respawn_delay=5
respawn_max=0
# supervise-daemon signals only orch: pods survive a restart. With
# --kill-pods-on-stop orch needs up to a minute after SIGTERM to stop its
# pods: wait 90 s, as systemd's default TimeoutStopSec, before SIGKILL.
retry="TERM/90/KILL/5"

depend() {
	need net
	after network-online firewall
	want cgroups
}

start_pre() {
	modprobe overlay 2>/dev/null || true
	modprobe nf_tables 2>/dev/null || true
}
EOF
	info "wrote $UNIT_FILE"
}

write_uninstall() {
	# The values are baked in; the body below is literal.
	{
		cat <<EOF
#!/bin/sh
# Removes orch ($SERVICE) from this machine: stops the service, runs
# orch-killall.sh (pods, mounts under $DATA_DIR, network interfaces,
# nftables tables), removes the unit and the binary. With --purge it also
# deletes $DATA_DIR (the cluster's data!) and $CONFIG_DIR.
# Written by the orch installer.
set -eu
ROOT='$ROOT'
SERVICE='$SERVICE'
INIT='$INIT'
BIN_DIR='$BIN_DIR'
UNIT_FILE='$UNIT_FILE'
ENV_FILE='$ENV_FILE'
DATA_DIR='$DATA_DIR'
CONFIG_DIR='$CONFIG_DIR'
SELF='$UNINSTALL'
EOF
		cat <<'EOF'

PURGE=false
for a in "$@"; do
	case $a in
	--purge) PURGE=true ;;
	-h | --help)
		echo "usage: $SELF [--purge]   (--purge also deletes $DATA_DIR and $CONFIG_DIR)"
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

# HOST is false under a staging or test root: the service manager, network
# interfaces and nftables of this machine are not that root's to remove.
HOST=true
[ -z "$ROOT" ] || HOST=false

echo "[INFO]  stopping $SERVICE"
[ "$HOST" = true ] || INIT=none
case $INIT in
systemd)
	quiet systemctl disable --now "$SERVICE"
	;;
openrc)
	quiet rc-service "$SERVICE" stop
	quiet rc-update delete "$SERVICE" default
	;;
esac

# Pods, mounts, network interfaces and nftables tables: orch-killall.sh,
# unless the other orch service is still installed here (killall would stop
# it too). Under INSTALL_ORCH_ROOT it stays inside that root.
OTHER=orch-agent-uninstall.sh
[ "$SELF" = orch-uninstall.sh ] || OTHER=orch-uninstall.sh
SHARED=false
[ ! -e "$ROOT$BIN_DIR/$OTHER" ] || SHARED=true
if [ "$SHARED" = true ]; then
	echo "[WARN]  $OTHER is still installed: not running orch-killall.sh, which would stop it too" >&2
elif [ -f "$ROOT$BIN_DIR/orch-killall.sh" ]; then
	INSTALL_ORCH_ROOT=$ROOT sh "$ROOT$BIN_DIR/orch-killall.sh"
fi

echo "[INFO]  removing files"
[ -z "$UNIT_FILE" ] || rm -f "$ROOT$UNIT_FILE"
rm -f "$ROOT$ENV_FILE"
# A server and an agent on one machine share the binary, orch-killall.sh
# and the data dir: the second uninstall removes them.
[ "$SHARED" = true ] || rm -f "$ROOT$BIN_DIR/orch" "$ROOT$BIN_DIR/orch-killall.sh"
if [ "$INIT" = systemd ]; then
	quiet systemctl daemon-reload
	quiet systemctl reset-failed "$SERVICE"
fi
if [ "$PURGE" = true ]; then
	if [ "$SHARED" = true ]; then
		echo "[WARN]  $OTHER is still installed: keeping $DATA_DIR and $CONFIG_DIR" >&2
	else
		echo "[INFO]  deleting $DATA_DIR and $CONFIG_DIR"
		rm -rf "$ROOT$DATA_DIR" "$ROOT$CONFIG_DIR"
	fi
fi
rm -f "$ROOT$BIN_DIR/$SELF"
echo "[INFO]  orch ($SERVICE) is uninstalled"
EOF
	} | write_file "$ROOT$BIN_DIR/$UNINSTALL" 0755
	info "wrote $BIN_DIR/$UNINSTALL"
}

# write_killall installs orch-killall.sh: a verbatim copy of
# scripts/orch-killall.sh (a test keeps the two identical), which stops orch
# and all its pods, mounts, interfaces and nftables tables, as k3s-killall.sh.
write_killall() {
	write_file "$ROOT$BIN_DIR/orch-killall.sh" 0755 <<'ORCH_KILLALL_EOF'
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
ORCH_KILLALL_EOF
	info "wrote $BIN_DIR/orch-killall.sh"
}

# --- service ---------------------------------------------------------------

detect_init() {
	INIT=${INSTALL_ORCH_INIT:-}
	if [ -z "$INIT" ]; then
		if [ -d /run/systemd/system ]; then
			INIT=systemd
		elif [ -x /sbin/openrc-run ]; then
			INIT=openrc
		else
			INIT=none
		fi
	fi
	case $INIT in
	systemd)
		UNIT_FILE=$SYSTEMD_DIR/$SERVICE.service
		ENV_FILE=$SYSTEMD_DIR/$SERVICE.service.env
		;;
	openrc)
		UNIT_FILE=$OPENRC_DIR/$SERVICE
		ENV_FILE=$CONFIG_DIR/$SERVICE.env
		;;
	none)
		UNIT_FILE=
		ENV_FILE=$CONFIG_DIR/$SERVICE.env
		;;
	*) fatal "INSTALL_ORCH_INIT must be systemd, openrc or none, not $INIT" ;;
	esac
}

start_service() {
	if [ -n "$ROOT" ]; then
		# The service manager running now is not the one of that root.
		info "INSTALL_ORCH_ROOT is set: not enabling or starting $SERVICE"
		return
	fi
	case $INIT in
	systemd)
		systemctl daemon-reload
		is_true "${INSTALL_ORCH_SKIP_ENABLE:-}" || systemctl enable "$SERVICE" >/dev/null 2>&1 || fatal "systemctl enable $SERVICE failed"
		if ! is_true "${INSTALL_ORCH_SKIP_START:-}"; then
			info "starting $SERVICE"
			systemctl restart "$SERVICE" || fatal "systemctl restart $SERVICE failed; see journalctl -u $SERVICE"
		fi
		;;
	openrc)
		is_true "${INSTALL_ORCH_SKIP_ENABLE:-}" || rc-update add "$SERVICE" default >/dev/null
		if ! is_true "${INSTALL_ORCH_SKIP_START:-}"; then
			info "starting $SERVICE"
			rc-service "$SERVICE" restart || fatal "rc-service $SERVICE restart failed; see /var/log/$SERVICE.log"
		fi
		;;
	none)
		warn "no systemd or OpenRC found: start orch yourself, e.g. $BIN_DIR/orch $CMD (settings in $ENV_FILE)"
		;;
	esac
}

main() {
	parse_args "$@"
	detect_init
	validate_args
	build_env
	preflight
	if is_true "${INSTALL_ORCH_SKIP_DOWNLOAD:-}"; then
		[ -x "$ROOT$BIN_DIR/orch" ] || fatal "INSTALL_ORCH_SKIP_DOWNLOAD is set but $ROOT$BIN_DIR/orch is not an executable file; place the binary there first"
		info "using the existing $BIN_DIR/orch"
		check_config "$BIN_DIR/orch"
	else
		fetch_binary
		check_config "$TMP_DIR/orch"
		install_binary
	fi
	write_env
	case $INIT in
	systemd) write_systemd_unit ;;
	openrc) write_openrc_script ;;
	esac
	write_killall
	write_uninstall
	start_service
	if [ "$CMD" = server ]; then
		info "done: kubeconfig at $CONFIG_DIR/orch.yaml, join token in $DATA_DIR/server/token once the server is up"
	else
		info "done: this machine joins $JOIN_URL as a node"
	fi
}

main "$@"
