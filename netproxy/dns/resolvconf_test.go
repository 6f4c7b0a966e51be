package dns

import (
	"io/fs"
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

// TestChooseHostResolvConf checks k3s' choice of the node's resolver
// configuration over file contents: nothing is sent anywhere.
func TestChooseHostResolvConf(t *testing.T) {
	cand := func(path, content string) ResolvConfCandidate {
		return ResolvConfCandidate{Path: path, Content: []byte(content)}
	}
	stub := cand("/etc/resolv.conf", "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
	real := cand("/run/systemd/resolve/resolv.conf", "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n")
	private := cand("/etc/resolv.conf", "nameserver 10.0.0.2\n")
	mixed := cand("/etc/resolv.conf", "nameserver 192.0.2.53\nnameserver 127.0.0.1\n")
	linkLocal := cand("/etc/resolv.conf", "nameserver fe80::1%eth0\n")
	empty := cand("/etc/resolv.conf", "search lan\n")
	garbage := cand("/etc/resolv.conf", "nameserver resolver.lan\n")
	missing := ResolvConfCandidate{Path: "/run/systemd/resolve/resolv.conf", Err: fs.ErrNotExist}
	tests := []struct {
		name        string
		candidates  []ResolvConfCandidate
		want        string
		wantSkipped []string // substrings, one per skipped candidate
	}{
		{"a usable first file is taken", []ResolvConfCandidate{real, stub}, real.Path, nil},
		{"private resolvers are global unicast", []ResolvConfCandidate{private, real}, private.Path, nil},
		{"systemd-resolved stub falls back to resolved's real file", []ResolvConfCandidate{stub, real}, real.Path,
			[]string{"/etc/resolv.conf: nameserver 127.0.0.53 is a loopback"}},
		{"any loopback nameserver makes a file unusable", []ResolvConfCandidate{mixed, real}, real.Path,
			[]string{"nameserver 127.0.0.1"}},
		{"link-local", []ResolvConfCandidate{linkLocal, real}, real.Path, []string{"fe80::1%eth0"}},
		{"no nameserver is unusable", []ResolvConfCandidate{empty, real}, real.Path, []string{"no nameserver"}},
		{"a name is no nameserver", []ResolvConfCandidate{garbage, real}, real.Path, []string{`"resolver.lan" is no IP address`}},
		{"stub and no resolved file: fallback", []ResolvConfCandidate{stub, missing}, "",
			[]string{"127.0.0.53", "file does not exist"}},
		{"nothing: fallback", nil, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped := ChooseHostResolvConf(tc.candidates)
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if len(skipped) != len(tc.wantSkipped) {
				t.Fatalf("skipped %v, want %d reasons %q", skipped, len(tc.wantSkipped), tc.wantSkipped)
			}
			for i, w := range tc.wantSkipped {
				if !strings.Contains(skipped[i].Error(), w) {
					t.Errorf("reason %d %q, want it to contain %q", i, skipped[i], w)
				}
			}
		})
	}
	if err := CheckHostResolvConf([]byte(FallbackResolvConf)); err != nil {
		t.Errorf("the fallback configuration is itself unusable: %v", err)
	}
}

func TestLoadHostResolvConf(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(real, []byte("nameserver 192.0.2.53\nsearch lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cands := ReadResolvConfCandidates(filepath.Join(dir, "missing"), real)
	if cands[0].Err == nil || cands[1].Err != nil || string(cands[1].Content) != "nameserver 192.0.2.53\nsearch lan\n" {
		t.Errorf("ReadResolvConfCandidates: %+v", cands)
	}
	for _, path := range []string{"", filepath.Join(dir, "missing")} {
		c, err := LoadHostResolvConf(path)
		if err != nil || len(c.Nameservers)+len(c.Searches)+len(c.Options) != 0 {
			t.Errorf("LoadHostResolvConf(%q): %+v, %v; want an empty configuration", path, c, err)
		}
	}
	c, err := LoadHostResolvConf(real)
	if err != nil || !slices.Equal(c.Nameservers, []string{"192.0.2.53"}) || !slices.Equal(c.Searches, []string{"lan"}) {
		t.Errorf("got %+v, %v; want the file's nameserver and search", c, err)
	}
}
