package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Limits kubelet applies to a pod's resolv.conf.
const (
	maxNameservers    = 3
	maxSearchPaths    = 32
	maxSearchListChar = 2048
)

// ClusterDNSIP returns the kube-dns Service address: the 10th address of
// the service CIDR (10.43.0.10 for 10.43.0.0/16).
func ClusterDNSIP(serviceCIDR netip.Prefix) (netip.Addr, error) {
	p := serviceCIDR.Masked()
	n := new(big.Int).SetBytes(p.Addr().AsSlice())
	n.Add(n, big.NewInt(10))
	b := n.FillBytes(make([]byte, len(p.Addr().AsSlice())))
	a, ok := netip.AddrFromSlice(b)
	if !ok || !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("service CIDR %s is too small for a DNS service address", serviceCIDR)
	}
	return a, nil
}

// HostResolvConf is the node's own resolver configuration.
type HostResolvConf struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// Where the node's resolver configuration is looked for, in order, as
// k3s does: systemd-resolved's stub file names 127.0.0.53, which pods
// cannot reach from their own network namespace; resolved keeps the real
// upstreams in the second file.
const (
	EtcResolvConf     = "/etc/resolv.conf"
	SystemdResolvConf = "/run/systemd/resolve/resolv.conf"
)

// FallbackResolvConf is the configuration a node uses when none of the
// host's files names a resolver that pods can reach. k3s writes the same
// file (kubelet's --resolv-conf then points at it) rather than hand pods
// a loopback stub that answers nothing in their network namespace.
const FallbackResolvConf = "nameserver 8.8.8.8\n"

// ResolvConfCandidate is one file that may hold the node's resolver
// configuration, as read from disk; Err is set when it could not be read.
type ResolvConfCandidate struct {
	Path    string
	Content []byte
	Err     error
}

// ReadResolvConfCandidates reads paths, EtcResolvConf then
// SystemdResolvConf when none are given, for ChooseHostResolvConf.
func ReadResolvConfCandidates(paths ...string) []ResolvConfCandidate {
	if len(paths) == 0 {
		paths = []string{EtcResolvConf, SystemdResolvConf}
	}
	out := make([]ResolvConfCandidate, len(paths))
	for i, p := range paths {
		b, err := os.ReadFile(p)
		out[i] = ResolvConfCandidate{Path: p, Content: b, Err: err}
	}
	return out
}

// ChooseHostResolvConf returns the path of the first candidate that k3s
// would accept as the node's resolver configuration: readable, naming at
// least one nameserver and only global unicast ones (a loopback, link-local
// or multicast resolver answers the host but not a pod). skipped says why
// each earlier candidate was passed over. An empty path means none is
// usable and the caller should use FallbackResolvConf.
func ChooseHostResolvConf(candidates []ResolvConfCandidate) (path string, skipped []error) {
	for _, c := range candidates {
		err := c.Err
		if err == nil {
			err = CheckHostResolvConf(c.Content)
		}
		if err == nil {
			return c.Path, skipped
		}
		skipped = append(skipped, fmt.Errorf("%s: %w", c.Path, err))
	}
	return "", skipped
}

// CheckHostResolvConf reports why content cannot serve as the node's
// resolver configuration for pods and the node-local DNS server's
// upstreams, or nil when it can.
func CheckHostResolvConf(content []byte) error {
	c, err := ParseResolvConf(bytes.NewReader(content))
	if err != nil {
		return err
	}
	if len(c.Nameservers) == 0 {
		return errors.New("no nameserver")
	}
	for _, s := range c.Nameservers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("nameserver %q is no IP address", s)
		}
		if !a.IsGlobalUnicast() {
			return fmt.Errorf("nameserver %s is a loopback, link-local or multicast address, which pods cannot reach", s)
		}
	}
	return nil
}

// LoadHostResolvConf reads the node's resolver configuration from path.
// A missing file or an empty path is an empty configuration, as for
// kubelet with --resolv-conf="".
func LoadHostResolvConf(path string) (HostResolvConf, error) {
	if path == "" {
		return HostResolvConf{}, nil
	}
	c, err := readResolvConf(path)
	if errors.Is(err, fs.ErrNotExist) {
		return HostResolvConf{}, nil
	}
	return c, err
}

func readResolvConf(path string) (HostResolvConf, error) {
	f, err := os.Open(path)
	if err != nil {
		return HostResolvConf{}, err
	}
	defer f.Close()
	c, err := ParseResolvConf(f)
	if err != nil {
		return HostResolvConf{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseResolvConf reads a resolv.conf as kubelet does: every nameserver
// line, the last search line (trailing dots dropped, "." left out), and
// all options, a later one replacing an earlier one of the same name.
// "domain" lines are ignored, as kubelet ignores them.
func ParseResolvConf(r io.Reader) (HostResolvConf, error) {
	var c HostResolvConf
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				c.Nameservers = append(c.Nameservers, f[1])
			}
		case "search":
			c.Searches = c.Searches[:0]
			for _, d := range f[1:] {
				if d != "." {
					c.Searches = append(c.Searches, strings.TrimSuffix(d, "."))
				}
			}
		case "options":
			for _, o := range f[1:] {
				name, _, _ := strings.Cut(o, ":")
				c.Options = slices.DeleteFunc(c.Options, func(e string) bool {
					n, _, _ := strings.Cut(e, ":")
					return n == name
				})
				c.Options = append(c.Options, o)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return HostResolvConf{}, fmt.Errorf("read resolv.conf: %w", err)
	}
	return c, nil
}

// ClusterDNS describes the cluster's DNS service for pods.
type ClusterDNS struct {
	// Servers are the cluster DNS addresses (kubelet's --cluster-dns:
	// the kube-dns Service address); none means no cluster DNS, and
	// ClusterFirst pods fall back to the host's configuration as kubelet
	// does.
	Servers []string
	// Domain is the cluster domain ("cluster.local").
	Domain string
}

// ResolvConf returns the resolv.conf content of pod, the way kubelet
// computes it for dnsPolicy ClusterFirst, ClusterFirstWithHostNet,
// Default and None plus spec.dnsConfig. Options are sorted (kubelet's
// order comes from a map and so varies).
func ResolvConf(pod *v1.Pod, cluster ClusterDNS, host HostResolvConf) []byte {
	domain := strings.TrimSuffix(cluster.Domain, ".")
	if domain == "" {
		domain = DefaultDomain
	}
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = v1.DNSClusterFirst
	}
	// hostNetwork pods only use cluster DNS when they ask for it.
	if policy == v1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = v1.DNSDefault
	}
	if (policy == v1.DNSClusterFirst || policy == v1.DNSClusterFirstWithHostNet) && len(cluster.Servers) == 0 {
		policy = v1.DNSDefault
	}
	var servers, searches, options []string
	switch policy {
	case v1.DNSClusterFirst, v1.DNSClusterFirstWithHostNet:
		servers = slices.Clone(cluster.Servers)
		nsSvc := pod.Namespace + ".svc." + domain
		searches = append([]string{nsSvc, "svc." + domain, domain}, host.Searches...)
		options = []string{"ndots:5"}
	case v1.DNSDefault:
		servers = slices.Clone(host.Nameservers)
		searches = slices.Clone(host.Searches)
		options = slices.Clone(host.Options)
	case v1.DNSNone:
	}
	if c := pod.Spec.DNSConfig; c != nil {
		servers = append(servers, c.Nameservers...)
		searches = append(searches, c.Searches...)
		options = mergeOptions(options, c.Options)
	}
	servers = dedupe(servers)
	if len(servers) > maxNameservers {
		servers = servers[:maxNameservers]
	}
	searches = fitSearches(dedupe(searches))

	var b bytes.Buffer
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.Bytes()
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// fitSearches drops trailing search domains beyond kubelet's limits.
func fitSearches(s []string) []string {
	if len(s) > maxSearchPaths {
		s = s[:maxSearchPaths]
	}
	for len(s) > 0 && len(strings.Join(s, " ")) > maxSearchListChar {
		s = s[:len(s)-1]
	}
	return s
}

// mergeOptions lets dnsConfig options override same-named existing ones.
func mergeOptions(existing []string, extra []v1.PodDNSConfigOption) []string {
	m := map[string]string{}
	for _, o := range existing {
		name, value, _ := strings.Cut(o, ":")
		m[name] = value
	}
	for _, o := range extra {
		m[o.Name] = ""
		if o.Value != nil {
			m[o.Name] = *o.Value
		}
	}
	out := make([]string, 0, len(m))
	for name, value := range m {
		if value != "" {
			name += ":" + value
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
