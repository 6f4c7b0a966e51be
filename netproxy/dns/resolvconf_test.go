package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestResolvConf(t *testing.T) {
	cluster := ClusterDNS{Servers: []string{"10.43.0.10"}, Domain: "cluster.local"}
	host := HostResolvConf{Nameservers: []string{"192.0.2.53", "192.0.2.54"}, Searches: []string{"lan"}, Options: []string{"edns0"}}
	pod := func(policy v1.DNSPolicy, hostNet bool, cfg *v1.PodDNSConfig) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"},
			Spec: v1.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: cfg}}
	}
	clusterFirst := "search shop.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\noptions ndots:5\n"
	hostConf := "search lan\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0\n"
	tests := []struct {
		name    string
		pod     *v1.Pod
		cluster ClusterDNS
		want    string
	}{
		{"ClusterFirst", pod(v1.DNSClusterFirst, false, nil), cluster, clusterFirst},
		{"empty policy means ClusterFirst", pod("", false, nil), cluster, clusterFirst},
		{"ClusterFirst on host network is Default", pod(v1.DNSClusterFirst, true, nil), cluster, hostConf},
		{"ClusterFirstWithHostNet", pod(v1.DNSClusterFirstWithHostNet, true, nil), cluster, clusterFirst},
		{"ClusterFirst without cluster DNS is Default", pod(v1.DNSClusterFirst, false, nil), ClusterDNS{}, hostConf},
		{"Default", pod(v1.DNSDefault, false, nil), cluster, hostConf},
		{"None with dnsConfig", pod(v1.DNSNone, false, &v1.PodDNSConfig{
			Nameservers: []string{"1.2.3.4"}, Searches: []string{"a.example", "b.example"},
			Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "edns0"}},
		}), cluster, "search a.example b.example\nnameserver 1.2.3.4\noptions edns0 ndots:2\n"},
		{"None without dnsConfig", pod(v1.DNSNone, false, nil), cluster, ""},
		{"ClusterFirst merges dnsConfig", pod(v1.DNSClusterFirst, false, &v1.PodDNSConfig{
			Nameservers: []string{"10.43.0.10", "1.2.3.4"}, Searches: []string{"my.dns.search.suffix", "lan"},
			Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "single-request-reopen"}},
		}), cluster, "search shop.svc.cluster.local svc.cluster.local cluster.local lan my.dns.search.suffix\n" +
			"nameserver 10.43.0.10\nnameserver 1.2.3.4\noptions ndots:2 single-request-reopen\n"},
		{"at most three nameservers", pod(v1.DNSClusterFirst, false, &v1.PodDNSConfig{Nameservers: []string{"1.1.1.1", "2.2.2.2", "3.3.3.3"}}),
			cluster, "search shop.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\nnameserver 1.1.1.1\nnameserver 2.2.2.2\noptions ndots:5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(ResolvConf(tc.pod, tc.cluster, host)); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name, in                   string
		servers, searches, options string
	}{
		{"comments, several nameservers", "# generated\nnameserver 192.0.2.53\nsearch lan corp ; trailing comment\nnameserver 192.0.2.54\noptions edns0 timeout:2\n",
			"192.0.2.53,192.0.2.54", "lan,corp", "edns0,timeout:2"},
		{"the last search line wins; trailing dots and . dropped", "search old\nsearch lan. . corp\n", "", "lan,corp", ""},
		{"domain lines are ignored, as by kubelet", "domain example.org\nnameserver 192.0.2.53\n", "192.0.2.53", "", ""},
		{"a later option replaces an earlier one", "options ndots:2 edns0\noptions ndots:3\n", "", "", "edns0,ndots:3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResolvConf(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.Nameservers, ",") != tc.servers || strings.Join(got.Searches, ",") != tc.searches ||
				strings.Join(got.Options, ",") != tc.options {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestClusterDNSIP(t *testing.T) {
	tests := []struct{ cidr, want string }{
		{"10.43.0.0/16", "10.43.0.10"},
		{"10.96.0.0/12", "10.96.0.10"},
		{"198.19.0.0/24", "198.19.0.10"},
		{"fd00:43::/112", "fd00:43::a"},
		{"10.43.0.0/29", ""},
	}
	for _, tc := range tests {
		got, err := ClusterDNSIP(netip.MustParsePrefix(tc.cidr))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: got %s, want an error", tc.cidr, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%s: got %s, %v; want %s", tc.cidr, got, err, tc.want)
		}
	}
}

func TestLocateHostResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stub := write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
	real := write("real", "nameserver 192.0.2.53\nsearch lan\n")
	mixed := write("mixed", "nameserver 192.0.2.53\nnameserver 127.0.0.1\n")
	empty := write("empty", "search lan\n")
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name  string
		paths []string
		want  string
	}{
		{"systemd-resolved stub falls back to the real file", []string{stub, real}, real},
		{"a usable first file is taken", []string{real, stub}, real},
		{"any loopback nameserver makes a file unusable", []string{mixed, real}, real},
		{"no nameserver is unusable", []string{empty, real}, real},
		{"missing files are skipped", []string{missing, real}, real},
		{"none usable: the first", []string{stub, empty}, stub},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := LocateHostResolvConf(tc.paths...); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	c, err := LoadHostResolvConf(missing)
	if err != nil || len(c.Nameservers)+len(c.Searches)+len(c.Options) != 0 {
		t.Errorf("missing resolv.conf: %+v, %v; want an empty configuration", c, err)
	}
	c, err = LoadHostResolvConf(stub, real)
	if err != nil || !slices.Equal(c.Nameservers, []string{"192.0.2.53"}) {
		t.Errorf("got %+v, %v; want the real file's nameserver", c, err)
	}
}
