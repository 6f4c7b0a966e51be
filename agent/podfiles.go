package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/netproxy/dns"
)

// notFoundError is a missing ConfigMap or Secret, worded as the kubelet
// words it in container statuses.
type notFoundError struct{ msg string }

func (e notFoundError) Error() string { return e.msg }

func isNotFound(err error) bool {
	var nf notFoundError
	return errors.As(err, &nf) || apierrors.IsNotFound(err)
}

func (a *Agent) podDir(uid types.UID) string { return filepath.Join(a.podsDir(), string(uid)) }

// podHostname is the pod's hostname: spec.hostname or its name, cut to
// 63 characters.
func podHostname(pod *v1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// writePodFiles writes the pod's /etc/hosts, /etc/resolv.conf and
// /etc/hostname, which every container bind mounts.
func (a *Agent) writePodFiles(pod *v1.Pod, podIP string) error {
	dir := a.podDir(pod.UID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hosts, err := a.hostsFile(pod, podIP)
	if err != nil {
		return err
	}
	resolv, err := a.resolvConf(pod)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"etc-hosts":   hosts,
		"resolv.conf": resolv,
		"hostname":    []byte(podHostname(pod) + "\n"),
	} {
		if err := writeFileAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write pod file %s: %w", name, err)
		}
	}
	return nil
}

// hostsFile renders the kubelet's managed /etc/hosts.
func (a *Agent) hostsFile(pod *v1.Pod, podIP string) ([]byte, error) {
	var b bytes.Buffer
	if pod.Spec.HostNetwork {
		host, err := os.ReadFile("/etc/hosts")
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		b.Write(host)
	} else {
		b.WriteString("# Kubernetes-managed hosts file.\n")
		b.WriteString("127.0.0.1\tlocalhost\n")
		b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
		b.WriteString("fe00::0\tip6-localnet\n")
		b.WriteString("fe00::0\tip6-mcastprefix\n")
		b.WriteString("fe00::1\tip6-allnodes\n")
		b.WriteString("fe00::2\tip6-allrouters\n")
		if podIP != "" {
			host := podHostname(pod)
			if pod.Spec.Subdomain != "" {
				fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", podIP, host, pod.Spec.Subdomain, pod.Namespace, a.cfg.ClusterDomain, host)
			} else {
				fmt.Fprintf(&b, "%s\t%s\n", podIP, host)
			}
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, ha := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
		}
	}
	return b.Bytes(), nil
}

// resolvConf renders the pod's resolv.conf as kubelet does for its
// dnsPolicy and dnsConfig (dns.ResolvConf), from the node's resolver
// configuration.
func (a *Agent) resolvConf(pod *v1.Pod) ([]byte, error) {
	host, err := dns.LoadHostResolvConf(a.hostResolvConf)
	if err != nil {
		return nil, err
	}
	return dns.ResolvConf(pod, dns.ClusterDNS{Servers: a.cfg.ClusterDNS, Domain: a.cfg.ClusterDomain}, host), nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removePodDir unmounts everything under the pod's directory (tmpfs
// volumes) and removes it.
func (a *Agent) removePodDir(uid types.UID) error {
	dir := a.podDir(uid)
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	// Deepest first.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
