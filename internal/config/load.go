package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/orch-dev/orch/agent"
	"github.com/orch-dev/orch/internal/logfile"
	"github.com/orch-dev/orch/server"
)

// Server resolves and checks the settings of `orch server`. All problems
// are reported at once, joined. The Logger field is left for the caller.
func Server(src Sources) (server.Config, error) {
	vals, err := resolve(ServerCommand, src)
	if err != nil {
		return server.Config{}, err
	}
	c := &checker{vals: vals}
	cfg := server.Config{
		DataDir:           c.absDir(keyDataDir),
		BindAddress:       c.ip(keyBindAddress),
		HTTPSPort:         c.port(keyHTTPSListenPort),
		NodeName:          c.nodeName(keyNodeName, src),
		Token:             c.token(keyToken, false),
		ClusterCIDR:       c.prefix(keyClusterCIDR),
		ServiceCIDR:       c.prefix(keyServiceCIDR),
		WriteKubeconfig:   c.file(keyWriteKubeconfig),
		KubeconfigMode:    c.fileMode(keyKubeconfigMode),
		NodeGracePeriod:   c.duration(keyNodeGrace, 5*time.Second),
		SnapshotInterval:  c.durationOrZero(keySnapInterval, time.Minute),
		SnapshotRetention: c.count(keySnapRetention),
		DisableAgent:      c.boolean(keyDisableAgent),
		SecretsEncryption: c.boolean(keySecretsEncrypt),
		FlannelBackend:    c.oneOf(keyFlannelBackend, "none", "host-gw", "vxlan", "auto"),
		Disable:           c.names(keyDisable),
		Debug:             c.boolean(keyDebug),
	}
	c.networks(cfg.ClusterCIDR, cfg.ServiceCIDR)
	c.logging()
	// Checked with the rest; read by ServerLocalNode.
	c.absDir(keyCgroupRoot)
	c.boolean(keyKillPodsOnStop)
	c.nodeAddress(keyNodeIP)
	c.nodeAddress(keyNodeExternalIP)
	c.optionalFile(keyResolvConf)
	if err := c.err(); err != nil {
		return server.Config{}, err
	}
	return cfg, nil
}

// Agent resolves and checks the settings of `orch agent`. All problems are
// reported at once, joined. The Logger field is left for the caller.
func Agent(src Sources) (agent.Config, error) {
	vals, err := resolve(AgentCommand, src)
	if err != nil {
		return agent.Config{}, err
	}
	c := &checker{vals: vals}
	cfg := agent.Config{
		ServerURL: c.serverURL(keyJoin),
		Token:     c.token(keyToken, false),
		NodeName:  c.nodeName(keyNodeName, src),
		DataDir:   c.absDir(keyDataDir),
		Debug:     c.boolean(keyDebug),
	}
	cfg.KillPodsOnStop = c.boolean(keyKillPodsOnStop)
	cfg.NodeIP, cfg.NodeExternalIP = c.nodeAddress(keyNodeIP), c.nodeAddress(keyNodeExternalIP)
	cfg.TunnelKeepalive = c.duration(keyTunnelKeepalive, time.Second)
	cfg.CgroupRoot = c.absDir(keyCgroupRoot)
	cfg.ResolvConf = c.optionalFile(keyResolvConf)
	if backend := c.oneOf(keyFlannelBackend, "none", "host-gw", "vxlan", "auto"); backend != "none" {
		cfg.Network = &agent.NetworkConfig{ClusterCIDR: c.prefix(keyClusterCIDR), ServiceCIDR: c.prefix(keyServiceCIDR), Backend: backend}
		c.networks(cfg.Network.ClusterCIDR, cfg.Network.ServiceCIDR)
		cfg.Network.IngressHTTPPort, cfg.Network.IngressHTTPSPort = 80, 443
	}
	for _, name := range c.names(keyDisable) {
		switch {
		case name != "ingress":
			c.fail(keyDisable, "%q is no component an agent runs (want ingress)", name)
		case cfg.Network != nil:
			cfg.Network.IngressHTTPPort, cfg.Network.IngressHTTPSPort = 0, 0
		}
	}
	c.logging()
	if err := c.err(); err != nil {
		return agent.Config{}, err
	}
	return cfg, nil
}

// Logging resolves the --log settings of command (ServerCommand or
// AgentCommand). Path is empty when logs go to stderr.
func Logging(command string, src Sources) (logfile.Options, error) {
	vals, err := resolve(command, src)
	if err != nil {
		return logfile.Options{}, err
	}
	c := &checker{vals: vals}
	opts := c.logging()
	if err := c.err(); err != nil {
		return logfile.Options{}, err
	}
	return opts, nil
}

// PrivateRegistry resolves --private-registry of command (ServerCommand
// or AgentCommand): the registries.yaml the node's image puller reads.
func PrivateRegistry(command string, src Sources) (string, error) {
	vals, err := resolve(command, src)
	if err != nil {
		return "", err
	}
	c := &checker{vals: vals}
	path := c.file(keyPrivateRegistry)
	return path, c.err()
}

// LocalNode is what the server's built-in node takes from the settings of
// `orch server` beyond server.Config: settings of the node, not of the
// control plane.
type LocalNode struct {
	CgroupRoot     string // --cgroup-root
	KillPodsOnStop bool   // --kill-pods-on-stop
	NodeIP         string // --node-ip
	NodeExternalIP string // --node-external-ip
	ResolvConf     string // --resolv-conf
}

// ServerLocalNode resolves the node settings of `orch server`.
func ServerLocalNode(src Sources) (LocalNode, error) {
	vals, err := resolve(ServerCommand, src)
	if err != nil {
		return LocalNode{}, err
	}
	c := &checker{vals: vals}
	n := LocalNode{CgroupRoot: c.absDir(keyCgroupRoot), KillPodsOnStop: c.boolean(keyKillPodsOnStop),
		NodeIP: c.nodeAddress(keyNodeIP), NodeExternalIP: c.nodeAddress(keyNodeExternalIP),
		ResolvConf: c.optionalFile(keyResolvConf)}
	return n, c.err()
}

// logging parses the --log settings. Server and Agent check them too, so
// that every problem of a configuration is reported at once.
func (c *checker) logging() logfile.Options {
	opts := logfile.Options{
		MaxSize:    int64(c.count(keyLogMaxSize)) << 20,
		MaxBackups: c.countOrZero(keyLogMaxBackups),
	}
	if c.text(keyLog) != "" {
		opts.Path = c.file(keyLog)
	}
	return opts
}

// checker parses resolved values one key at a time, collecting every
// problem so the user fixes them in one round.
type checker struct {
	vals map[string]value
	errs []error
}

func (c *checker) fail(key, format string, args ...any) {
	c.errs = append(c.errs, &Error{Key: key, Origin: c.vals[key].origin, Reason: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error { return errors.Join(c.errs...) }

func (c *checker) text(key string) string { return c.vals[key].text }

func (c *checker) boolean(key string) bool {
	t := c.text(key)
	b, err := strconv.ParseBool(t)
	if err != nil {
		c.fail(key, "%q is not a boolean (want true or false)", t)
	}
	return b
}

func (c *checker) port(key string) int {
	t := strings.TrimSpace(c.text(key))
	n, err := strconv.Atoi(t)
	switch {
	case err != nil:
		c.fail(key, "%q is not a port number", c.text(key))
		return 0
	case n < 1 || n > 65535:
		c.fail(key, "port %d is out of range 1-65535", n)
		return 0
	}
	return n
}

// fileMode parses an octal permission such as 0600 or 644.
func (c *checker) fileMode(key string) os.FileMode {
	t := strings.TrimSpace(c.text(key))
	n, err := strconv.ParseUint(t, 8, 32)
	if err != nil || n > 0o777 {
		c.fail(key, "%q is not a file mode (octal, e.g. 0600 or 0644)", c.text(key))
		return 0
	}
	return os.FileMode(n)
}

// duration parses a Go duration (40s, 1m30s) of at least min.
func (c *checker) duration(key string, min time.Duration) time.Duration {
	t := strings.TrimSpace(c.text(key))
	d, err := time.ParseDuration(t)
	switch {
	case err != nil:
		c.fail(key, "%q is not a duration (e.g. 40s or 1m)", c.text(key))
		return 0
	case d < min:
		c.fail(key, "%s is shorter than the minimum %s", d, min)
		return 0
	}
	return d
}

// durationOrZero is duration, but 0 (off) is allowed too.
func (c *checker) durationOrZero(key string, min time.Duration) time.Duration {
	if t := strings.TrimSpace(c.text(key)); t == "0" || t == "0s" {
		return 0
	}
	return c.duration(key, min)
}

// count parses a positive whole number.
func (c *checker) count(key string) int {
	n, err := strconv.Atoi(strings.TrimSpace(c.text(key)))
	if err != nil || n < 1 {
		c.fail(key, "%q is not a positive whole number", c.text(key))
		return 0
	}
	return n
}

// countOrZero parses a whole number, zero allowed.
func (c *checker) countOrZero(key string) int {
	if strings.TrimSpace(c.text(key)) == "0" {
		return 0
	}
	return c.count(key)
}

// names splits a list setting (comma-separated outside the command line)
// into its items, each a plain name such as a manifest's.
func (c *checker) names(key string) []string {
	var out []string
	for _, n := range strings.Split(c.text(key), ",") {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
			continue
		case strings.ContainsAny(n, "/\\") || strings.HasPrefix(n, "."):
			c.fail(key, "%q is not a name (want e.g. local-storage)", n)
			continue
		}
		out = append(out, n)
	}
	return out
}

func (c *checker) ip(key string) string {
	t := c.text(key)
	a, err := netip.ParseAddr(t)
	if err != nil || a.Zone() != "" {
		c.fail(key, "%q is not an IP address (e.g. 0.0.0.0 or 192.168.1.10)", t)
		return ""
	}
	return a.String()
}

// nodeAddress checks an optional address of the node: an IPv4 address
// (the pod network and service proxy are IPv4) that can be one.
func (c *checker) nodeAddress(key string) string {
	t := c.text(key)
	if t == "" {
		return ""
	}
	a, err := netip.ParseAddr(t)
	switch {
	case err != nil || a.Zone() != "":
		c.fail(key, "%q is not an IP address (e.g. 192.168.1.10)", t)
	case !a.Unmap().Is4():
		c.fail(key, "%q is not an IPv4 address; IPv6 node addresses are not supported yet", t)
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
		c.fail(key, "%q cannot be a node's address", t)
	default:
		return a.Unmap().String()
	}
	return ""
}

// absDir checks a state directory. It must be absolute: a daemon's state
// cannot depend on the directory it happened to be started from.
func (c *checker) absDir(key string) string {
	t := c.text(key)
	switch {
	case t == "":
		c.fail(key, "must not be empty")
		return ""
	case !filepath.IsAbs(t):
		c.fail(key, "%q is not an absolute path", t)
		return ""
	}
	return filepath.Clean(t)
}

// file checks an output file name; relative names are taken relative to the
// working directory, as a user typing one on a shell expects.
// optionalFile is file for a setting that may be left empty.
func (c *checker) optionalFile(key string) string {
	if c.text(key) == "" {
		return ""
	}
	return c.file(key)
}

func (c *checker) file(key string) string {
	t := c.text(key)
	if t == "" {
		c.fail(key, "must not be empty")
		return ""
	}
	if strings.HasSuffix(t, "/") {
		c.fail(key, "%q names a directory, want a file", t)
		return ""
	}
	abs, err := filepath.Abs(t)
	if err != nil {
		c.fail(key, "%q: %v", t, err)
		return ""
	}
	return abs
}

// nodeName defaults to the host name in lower case, as the kubelet does,
// and must be a DNS subdomain because it becomes the Node's name.
func (c *checker) nodeName(key string, src Sources) string {
	v := c.vals[key]
	if v.text == "" && v.origin.kind == fromNowhere {
		h, err := src.hostname()
		if err != nil {
			c.fail(key, "not set and the host name is unreadable (%v); set --%s", err, key)
			return ""
		}
		v = value{text: strings.ToLower(strings.TrimSpace(h)), origin: Origin{kind: fromDefault}}
		c.vals[key] = v
	}
	if errs := validation.IsDNS1123Subdomain(v.text); len(errs) > 0 {
		if v.origin.kind == fromDefault {
			c.fail(key, "host name %q cannot name a node: %s; set --%s", v.text, strings.Join(errs, "; "), key)
		} else {
			c.fail(key, "%q cannot name a node: %s", v.text, strings.Join(errs, "; "))
		}
		return ""
	}
	return v.text
}

// token checks a join secret without ever echoing it.
func (c *checker) token(key string, required bool) string {
	t := c.text(key)
	if t == "" {
		if required {
			c.fail(key, "required: the join token printed by the server (in its data dir)")
		}
		return ""
	}
	for _, r := range t {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			c.fail(key, "contains spaces or control characters (value not shown)")
			return ""
		}
	}
	return t
}

func (c *checker) oneOf(key string, allowed ...string) string {
	t := c.text(key)
	if !slices.Contains(allowed, t) {
		c.fail(key, "%q is not one of %s", t, strings.Join(allowed, ", "))
	}
	return t
}

func (c *checker) prefix(key string) netip.Prefix {
	t := c.text(key)
	p, err := netip.ParsePrefix(t)
	if err != nil {
		c.fail(key, "%q is not a CIDR (e.g. 10.42.0.0/16)", t)
		return netip.Prefix{}
	}
	if m := p.Masked(); m != p {
		c.fail(key, "%q has host bits set; did you mean %s?", t, m)
		return netip.Prefix{}
	}
	return p
}

// networks checks the pod and service ranges together. Limits follow
// Kubernetes: each node takes a /24 (IPv4) or /64 (IPv6) of the cluster
// range; the service range is at most /12 (IPv4) or /108 (IPv6) because
// the allocator keeps a bitmap of it.
func (c *checker) networks(cluster, service netip.Prefix) {
	if cluster.IsValid() {
		if limit := nodeMaskBits(cluster); cluster.Bits() > limit {
			c.fail(keyClusterCIDR, "%s is too small: each node takes a /%d of it", cluster, limit)
		}
	}
	if service.IsValid() {
		smallest, largest := 30, 12
		if service.Addr().Is6() {
			smallest, largest = 126, 108
		}
		switch {
		case service.Bits() < largest:
			c.fail(keyServiceCIDR, "%s is too large: at most a /%d", service, largest)
		case service.Bits() > smallest:
			c.fail(keyServiceCIDR, "%s is too small: at least a /%d", service, smallest)
		}
	}
	if !cluster.IsValid() || !service.IsValid() {
		return
	}
	if cluster.Addr().Is4() != service.Addr().Is4() {
		c.fail(keyServiceCIDR, "%s and cluster-cidr %s (from %s) must be the same IP family",
			service, cluster, c.vals[keyClusterCIDR].origin)
		return
	}
	if cluster.Overlaps(service) {
		c.fail(keyServiceCIDR, "%s overlaps cluster-cidr %s (from %s); pods and services need separate ranges",
			service, cluster, c.vals[keyClusterCIDR].origin)
	}
}

func nodeMaskBits(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 24
	}
	return 64
}

// serverURL checks --join. The port defaults to 6443 so that
// `--join https://pi1` works; nothing but scheme, host and port is allowed
// because the agent builds every request path itself.
func (c *checker) serverURL(key string) string {
	t := c.text(key)
	if t == "" {
		c.fail(key, "required: the server to join, e.g. --join https://192.168.1.10:6443")
		return ""
	}
	u, err := url.Parse(t)
	if err != nil {
		c.fail(key, "%q is not a URL", t)
		return ""
	}
	switch {
	case u.Scheme != "https":
		c.fail(key, "%q must start with https://", t)
		return ""
	case u.Hostname() == "":
		c.fail(key, "%q has no host", t)
		return ""
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		c.fail(key, "%q must be just https://HOST:PORT", t)
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "6443"
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		c.fail(key, "%q has a bad port", t)
		return ""
	}
	return "https://" + joinHostPort(u.Hostname(), port)
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}
