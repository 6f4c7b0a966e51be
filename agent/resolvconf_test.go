package agent

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodResolvConf checks the agent's wiring of pods' resolv.conf: its
// cluster DNS and domain reach ClusterFirst pods, and dnsPolicy None
// takes only dnsConfig. The policies themselves are tested in
// netproxy/dns (ResolvConf); the host's part here depends on the machine.
func TestPodResolvConf(t *testing.T) {
	a := &Agent{cfg: Config{ClusterDNS: []string{"10.43.0.10"}, ClusterDomain: "cluster.local"}}
	pod := func(policy v1.DNSPolicy, cfg *v1.PodDNSConfig) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}, Spec: v1.PodSpec{DNSPolicy: policy, DNSConfig: cfg}}
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want []string // lines or line prefixes, in order
	}{
		{"ClusterFirst", pod(v1.DNSClusterFirst, nil),
			[]string{"search shop.svc.cluster.local svc.cluster.local cluster.local", "nameserver 10.43.0.10", "options ndots:5"}},
		{"None", pod(v1.DNSNone, &v1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: []string{"example.org"}}),
			[]string{"search example.org", "nameserver 192.0.2.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := a.resolvConf(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got:\n%s\nwant lines starting %q", out, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d %q, want it to start with %q", i, lines[i], w)
				}
			}
		})
	}
}
