package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/orch-dev/orch/netproxy/dns"
)

// locateHostResolvConf decides, once at start, which file is the node's
// own resolver configuration: the one pods with dnsPolicy Default get and
// the node-local DNS server forwards to. It is k3s' choice
// (locateOrGenerateResolvConf): --resolv-conf when given; else
// /etc/resolv.conf or systemd-resolved's /run/systemd/resolve/resolv.conf,
// the first naming only resolvers a pod can reach; else a file written
// under the data dir with FallbackResolvConf (8.8.8.8), so that pods are
// never handed the host's loopback stub, which answers nothing in their
// network namespace.
func (a *Agent) locateHostResolvConf() (string, error) {
	return a.chooseHostResolvConf(dns.ReadResolvConfCandidates())
}

// chooseHostResolvConf is locateHostResolvConf over the default files as
// read (tests pass their own).
func (a *Agent) chooseHostResolvConf(candidates []dns.ResolvConfCandidate) (string, error) {
	if p := a.cfg.ResolvConf; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("--resolv-conf: %w", err)
		}
		if err := dns.CheckHostResolvConf(b); err != nil {
			a.log.Warn("--resolv-conf names no resolver pods can reach; using it as given", "path", p, "reason", err)
		}
		return p, nil
	}
	path, skipped := dns.ChooseHostResolvConf(candidates)
	if path != "" {
		if len(skipped) > 0 {
			a.log.Info("using the node's resolver configuration", "path", path, "skipped", joinReasons(skipped))
		}
		return path, nil
	}
	path = filepath.Join(a.dir, "etc", "resolv.conf")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("fallback resolv.conf: %w", err)
	}
	if err := writeFileAtomic(path, []byte(dns.FallbackResolvConf), 0o644); err != nil {
		return "", fmt.Errorf("fallback resolv.conf: %w", err)
	}
	a.log.Warn("host resolv.conf names only loopback, link-local or multicast resolvers (or none); pods with dnsPolicy Default and names outside the cluster use nameserver 8.8.8.8 (set --resolv-conf to choose)",
		"path", path, "skipped", joinReasons(skipped))
	return path, nil
}

// joinReasons puts why files were skipped on one log line.
func joinReasons(errs []error) string {
	s := make([]string, len(errs))
	for i, err := range errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}
