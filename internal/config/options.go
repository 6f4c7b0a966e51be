// Package config turns what a user asked for — command-line flags, ORCH_*
// environment variables and the YAML config file — into the checked Config
// of the server or agent package.
//
// As in k3s, the config file is exactly the flags: its keys are flag names
// (`https-listen-port: 6443`, `disable-agent: true`) and the environment
// variable of a flag is ORCH_ plus its name in upper case with underscores
// (ORCH_HTTPS_LISTEN_PORT). A value is taken from the first of: the command
// line, the environment, the file, the default. An environment variable set
// to the empty string counts as unset, so a blank line in an env file cannot
// override the config file by accident.
//
// Every error names the key and where its value came from (a flag, an
// environment variable, or file:line), so the user can fix it without
// guessing. Unknown keys in the file are errors, with the closest known key
// suggested. The package reads the process environment, the host name and
// the file only through Sources, and keeps no state.
package config

import "strings"

// DefaultFile is where both commands look for a config file when neither
// --config nor ORCH_CONFIG names one. A missing default file is fine; a
// missing file the user named is an error.
const DefaultFile = "/etc/orch/config.yaml"

// Names of the settings: flag names, config file keys, and (in upper case)
// environment variable suffixes.
const (
	keyConfig          = "config"
	keyDataDir         = "data-dir"
	keyBindAddress     = "bind-address"
	keyHTTPSListenPort = "https-listen-port"
	keyNodeName        = "node-name"
	keyToken           = "token"
	keyClusterCIDR     = "cluster-cidr"
	keyServiceCIDR     = "service-cidr"
	keyWriteKubeconfig = "write-kubeconfig"
	keyKubeconfigMode  = "write-kubeconfig-mode"
	keyNodeGrace       = "node-monitor-grace-period"
	keySnapInterval    = "snapshot-interval"
	keySnapRetention   = "snapshot-retention"
	keyDisableAgent    = "disable-agent"
	keyDebug           = "debug"
	keyJoin            = "join"
	keyDisable         = "disable"
	keyLog             = "log"
	keyLogMaxSize      = "log-max-size"
	keyLogMaxBackups   = "log-max-backups"
	keyFlannelBackend  = "flannel-backend"
	keyPrivateRegistry = "private-registry"
	keySecretsEncrypt  = "secrets-encryption"
	keyCgroupRoot      = "cgroup-root"
	keyKillPodsOnStop  = "kill-pods-on-stop"
	keyTunnelKeepalive = "tunnel-keepalive"
	keyNodeIP          = "node-ip"
	keyNodeExternalIP  = "node-external-ip"
	keyResolvConf      = "resolv-conf"
)

// Option is one setting of a command: a flag, an environment variable and a
// config file key at once. The CLI builds its flags from these so the three
// spellings can never drift apart.
type Option struct {
	Name    string // flag name and config file key, e.g. "https-listen-port"
	Usage   string // one line of help
	Default string // default value as text; "" when there is none or it is computed
	Bool    bool   // a switch: `--debug` on the command line, true/false elsewhere
	List    bool   // repeatable flag; a YAML list or comma-separated text elsewhere
	Secret  bool   // never echoed in errors
}

// EnvVar is the environment variable that sets o, e.g. ORCH_HTTPS_LISTEN_PORT.
func (o Option) EnvVar() string {
	return envVar(o.Name)
}

func envVar(name string) string {
	return "ORCH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Command names, used in messages about keys that belong to the other one.
const (
	ServerCommand = "server"
	AgentCommand  = "agent"
)

// ServerOptions are the settings of `orch server`.
func ServerOptions() []Option {
	opts := []Option{
		configOption(),
		{Name: keyDataDir, Default: "/var/lib/orch", Usage: "directory for the database, certificates and node state (absolute path)"},
		{Name: keyBindAddress, Default: "0.0.0.0", Usage: "IP address the API server listens on"},
		{Name: keyHTTPSListenPort, Default: "6443", Usage: "HTTPS port of the API server"},
		{Name: keyNodeName, Usage: "name of this node (default: the host name, lower case)"},
		nodeIPOption(), nodeExternalIPOption(),
		{Name: keyToken, Secret: true, Usage: "secret agents use to join; generated and stored in the data dir when empty"},
		{Name: keyClusterCIDR, Default: "10.42.0.0/16", Usage: "IP range pods get their addresses from"},
		{Name: keyServiceCIDR, Default: "10.43.0.0/16", Usage: "IP range services get their cluster IPs from"},
		{Name: keyWriteKubeconfig, Default: "/etc/orch/orch.yaml", Usage: "write an admin kubeconfig for kubectl to this file"},
		{Name: keyKubeconfigMode, Default: "0600", Usage: "file mode of the kubeconfig, octal (e.g. 0644 to let other users read it)"},
		{Name: keySnapInterval, Default: "12h", Usage: "take a snapshot of the store this often into DATA/server/snapshots (0 disables)"},
		{Name: keySnapRetention, Default: "5", Usage: "how many scheduled snapshots to keep"},
		{Name: keyNodeGrace, Default: "40s", Usage: "how long a node may miss heartbeats before it is NotReady (e.g. 20s on fast edge links)"},
		{Name: keyDisableAgent, Bool: true, Default: "false", Usage: "run only the control plane, not a node in the same process"},
		{Name: keySecretsEncrypt, Bool: true, Default: "false", Usage: "encrypt Secrets at rest with AES-GCM (key file DATA/server/cred/encryption-config.json, made on first use)"},
		{Name: keyFlannelBackend, Default: "auto", Usage: "pod network of the node: host-gw (routes between nodes on one L2 network), vxlan, auto (host-gw where possible, else vxlan) or none (pods get loopback only)"},
		{Name: keyPrivateRegistry, Default: "/etc/orch/registries.yaml", Usage: "registry mirrors, credentials and TLS settings, in k3s' registries.yaml format (a missing file is fine)"},
		{Name: keyDisable, List: true, Usage: "do not apply this built-in manifest (its file name without .yaml, e.g. local-storage), or run the built-in ingress controller (ingress); repeatable"},
		cgroupRootOption(),
		killPodsOnStopOption(),
		resolvConfOption(),
		{Name: keyDebug, Bool: true, Default: "false", Usage: "log at debug level"},
	}
	return append(opts, logOptions()...)
}

// AgentOptions are the settings of `orch agent`.
func AgentOptions() []Option {
	opts := []Option{
		configOption(),
		{Name: keyJoin, Usage: "URL of the server to join, e.g. https://192.168.1.10:6443 (required)"},
		{Name: keyToken, Secret: true, Usage: "join token printed by the server (needed only until this machine has joined)"},
		{Name: keyNodeName, Usage: "name of this node (default: the host name, lower case)"},
		nodeIPOption(), nodeExternalIPOption(),
		{Name: keyDataDir, Default: "/var/lib/orch", Usage: "directory for node state, images and pods (absolute path)"},
		cgroupRootOption(),
		{Name: keyPrivateRegistry, Default: "/etc/orch/registries.yaml", Usage: "registry mirrors, credentials and TLS settings, in k3s' registries.yaml format (a missing file is fine)"},
		{Name: keyFlannelBackend, Default: "auto", Usage: "pod network of the node: host-gw, vxlan, auto (host-gw where possible, else vxlan) or none (pods get loopback only)"},
		{Name: keyClusterCIDR, Default: "10.42.0.0/16", Usage: "the server's --cluster-cidr (pod network), with --flannel-backend"},
		{Name: keyServiceCIDR, Default: "10.43.0.0/16", Usage: "the server's --service-cidr (cluster IPs), with --flannel-backend"},
		killPodsOnStopOption(),
		resolvConfOption(),
		{Name: keyDisable, List: true, Usage: "do not run this built-in component on the node: ingress (the ingress proxy on ports 80 and 443); repeatable"},
		{Name: keyTunnelKeepalive, Default: "10s", Usage: "heartbeat period on the tunnel to the server; either end drops the link after 1.5 periods without a sign of the other (a dead link is noticed within ~15 s by default)"},
		{Name: keyDebug, Bool: true, Default: "false", Usage: "log at debug level"},
	}
	return append(opts, logOptions()...)
}

// logOptions are the log file settings both commands share.
func logOptions() []Option {
	return []Option{
		{Name: keyLog, Usage: "write logs to this file instead of stderr, rotated by size"},
		{Name: keyLogMaxSize, Default: "10", Usage: "rotate the --log file when it reaches this many MiB"},
		{Name: keyLogMaxBackups, Default: "3", Usage: "how many rotated --log files to keep (FILE.1 is the newest)"},
	}
}

// nodeIPOption and nodeExternalIPOption are the node's addresses, shared
// by the agent and the server's built-in node.
func nodeIPOption() Option {
	return Option{Name: keyNodeIP, Usage: "IPv4 address of this node (its InternalIP; default: the address of the default route's interface)"}
}

func nodeExternalIPOption() Option {
	return Option{Name: keyNodeExternalIP, Usage: "external IP address of this node (its ExternalIP), e.g. the public address of a NAT in front of it: LoadBalancer Services list it instead of the node IP"}
}

func cgroupRootOption() Option {
	return Option{Name: keyCgroupRoot, Default: "/orch", Usage: "cgroup that pods are placed under (absolute path in the cgroup hierarchy)"}
}

// killPodsOnStopOption is the node's stop behaviour, shared by the agent and
// the server's built-in node. Off by default, as in k3s: an upgrade or
// restart of orch must not take the workloads down.
func killPodsOnStopOption() Option {
	return Option{Name: keyKillPodsOnStop, Bool: true, Default: "false", Usage: "on SIGTERM stop every pod of this node (each within its grace period, at most 30s) and remove their containers, cgroups, mounts and network state; by default pods keep running"}
}

// resolvConfOption is the node's resolver configuration, shared by the
// agent and the server's built-in node, as k3s' --resolv-conf.
func resolvConfOption() Option {
	return Option{Name: keyResolvConf, Usage: "resolv.conf naming the node's upstream DNS resolvers, for pods with dnsPolicy Default and names outside the cluster (default: /etc/resolv.conf, or /run/systemd/resolve/resolv.conf when the first names only loopback resolvers such as systemd-resolved's stub, else nameserver 8.8.8.8)"}
}

func configOption() Option {
	return Option{Name: keyConfig, Default: DefaultFile, Usage: "read settings from this YAML file; keys are flag names"}
}

// optionsFor returns the options of command and those of the other command,
// the latter to explain keys that are valid, just not here.
func optionsFor(command string) (own, other []Option, otherName string) {
	if command == AgentCommand {
		return AgentOptions(), ServerOptions(), ServerCommand
	}
	return ServerOptions(), AgentOptions(), AgentCommand
}
