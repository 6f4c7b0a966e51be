package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func unitConfig() Config {
	return Config{
		NodeName:     "node-a",
		NodeIPs:      []netip.Addr{netip.MustParseAddr("192.0.2.10")},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.43.0.0/16")},
	}
}

func TestBuild(t *testing.T) {
	const (
		svcWeb = "svc-default/web/tcp/http"
		svlWeb = "svl-default/web/tcp/http"
		extWeb = "ext-default/web/tcp/http"
		ep1    = "ep-default/web/tcp/http/10.42.0.5:8080"
		ep2    = "ep-default/web/tcp/http/10.42.1.7:8080"
		dnat1  = "meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.42.0.5 . 8080 }"
		dnat2  = "meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.42.0.5 . 8080, 1 : 10.42.1.7 . 8080 }"
	)
	masq := "ip daddr @cluster-ips ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
	twoEndpoints := slice("web", "web-1", "http", 8080,
		ep("10.42.0.5", "node-a", true), ep("10.42.1.7", "node-b", true), ep("10.42.2.9", "node-c", false))

	tests := []struct {
		name     string
		cfg      func(*Config)
		services []*v1.Service
		slices   []*discoveryv1.EndpointSlice
		chains   map[string][]string // expected rules; nil slice = chain must not exist
		sets     map[string][]string // expected elements
	}{
		{
			name:     "cluster IP balances over ready endpoints",
			services: []*v1.Service{svc("web", "10.43.0.20", tcpPort("http", 80, 0))},
			slices:   []*discoveryv1.EndpointSlice{twoEndpoints},
			chains: map[string][]string{
				// Without session affinity there are no endpoint chains:
				// each one would add to the kernel's validation of the
				// table on every change.
				svcWeb:              {masq, dnat2},
				ep1:                 nil,
				ep2:                 nil,
				extWeb:              nil,
				"cluster-ips-check": {"ip daddr @cluster-ips reject", "ip daddr 10.43.0.0/16 drop"},
				"masquerading": {
					"ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade",
					"meta mark & 0x00004000 == 0 return",
					"meta mark set meta mark ^ 0x00004000",
					"masquerade fully-random",
				},
			},
			sets: map[string][]string{
				"cluster-ips":          {"10.43.0.20"},
				"service-ips":          {"10.43.0.20 . tcp . 80 : goto " + svcWeb},
				"no-endpoint-services": {},
				"nodeport-ips":         {"192.0.2.10"},
				// Only the endpoint on this node (node-a) can reach
				// itself here.
				"hairpin-endpoints": {"10.42.0.5 . 10.42.0.5"},
			},
		},
		{
			name:     "no ready endpoints rejects",
			services: []*v1.Service{svc("web", "10.43.0.20", tcpPort("http", 80, 0))},
			slices:   []*discoveryv1.EndpointSlice{slice("web", "web-1", "http", 8080, ep("10.42.0.5", "node-a", false))},
			chains:   map[string][]string{svcWeb: nil},
			sets: map[string][]string{
				"cluster-ips":          {"10.43.0.20"},
				"service-ips":          {},
				"no-endpoint-services": {"10.43.0.20 . tcp . 80 : goto reject-chain"},
			},
		},
		{
			name:     "headless and ExternalName services get no rules",
			services: []*v1.Service{svc("db", v1.ClusterIPNone, tcpPort("pg", 5432, 0)), {Spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "example.org"}}},
			slices:   []*discoveryv1.EndpointSlice{slice("db", "db-1", "pg", 5432, ep("10.42.0.5", "node-a", true))},
			chains:   map[string][]string{"svc-default/db/tcp/pg": nil},
			sets:     map[string][]string{"cluster-ips": {}, "service-ips": {}, "no-endpoint-services": {}},
		},
		{
			name: "node port and external IP masquerade and go to the service chain",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeNodePort
				s.Spec.ExternalIPs = []string{"192.0.2.99"}
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			cfg:    func(c *Config) { c.LocalhostNodePorts = true },
			chains: map[string][]string{
				extWeb: {"jump mark-for-masquerade", "goto " + svcWeb},
			},
			sets: map[string][]string{
				"nodeport-ips":      {"127.0.0.1", "192.0.2.10"},
				"service-nodeports": {"tcp . 30080 : goto " + extWeb},
				"service-ips":       {"10.43.0.20 . tcp . 80 : goto " + svcWeb, "192.0.2.99 . tcp . 80 : goto " + extWeb},
			},
		},
		{
			name: "node port without endpoints rejects",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeNodePort
				return s
			}()},
			chains: map[string][]string{extWeb: nil},
			sets: map[string][]string{
				"service-nodeports":     {},
				"no-endpoint-nodeports": {"tcp . 30080 : goto reject-chain"},
			},
		},
		{
			name: "external traffic policy Local",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeNodePort
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			chains: map[string][]string{
				extWeb: {
					"ip saddr 10.42.0.0/16 goto " + svcWeb,
					"ip saddr @nodeport-ips jump mark-for-masquerade",
					"ip saddr @nodeport-ips goto " + svcWeb,
					"goto " + svlWeb,
				},
				svlWeb: {masq, dnat1},
			},
		},
		{
			name: "external traffic policy Local without local endpoints drops",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeNodePort
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{slice("web", "web-1", "http", 8080, ep("10.42.1.7", "node-b", true))},
			chains: map[string][]string{
				extWeb: {
					"ip saddr 10.42.0.0/16 goto " + svcWeb,
					"ip saddr @nodeport-ips jump mark-for-masquerade",
					"ip saddr @nodeport-ips goto " + svcWeb,
					"drop",
				},
				svlWeb: nil,
			},
		},
		{
			name: "internal traffic policy Local uses local endpoints only",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 0))
				s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			chains: map[string][]string{
				svcWeb: nil,
				svlWeb: {masq, dnat1},
				ep2:    nil,
			},
			sets: map[string][]string{"service-ips": {"10.43.0.20 . tcp . 80 : goto " + svlWeb}},
		},
		{
			name: "internal traffic policy Local without local endpoints drops",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 0))
				s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{slice("web", "web-1", "http", 8080, ep("10.42.1.7", "node-b", true))},
			chains: map[string][]string{svlWeb: nil, svcWeb: nil},
			sets: map[string][]string{
				"service-ips":          {},
				"no-endpoint-services": {"10.43.0.20 . tcp . 80 : drop"},
			},
		},
		{
			name: "session affinity",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 0))
				s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{slice("web", "web-1", "http", 8080, ep("10.42.0.5", "node-a", true))},
			chains: map[string][]string{
				svcWeb: {masq,
					"ip saddr @aff-default/web/tcp/http/10.42.0.5:8080 goto " + ep1,
					"numgen random mod 1 vmap { 0 : goto " + ep1 + " }"},
				ep1: {"update @aff-default/web/tcp/http/10.42.0.5:8080 { ip saddr }",
					"meta l4proto tcp dnat to 10.42.0.5:8080"},
			},
			sets: map[string][]string{"aff-default/web/tcp/http/10.42.0.5:8080": {}},
		},
		{
			name:     "ports match by name and protocol; unnamed ports use the number",
			services: []*v1.Service{svc("dns", "10.43.0.10", udpPort("dns", 53), tcpPort("dns-tcp", 53, 0), tcpPort("", 9153, 0))},
			slices: []*discoveryv1.EndpointSlice{
				sliceProto("dns", "dns-1", "dns", v1.ProtocolUDP, 5353, ep("10.42.0.3", "node-a", true)),
				sliceProto("dns", "dns-2", "dns-tcp", v1.ProtocolTCP, 5353, ep("10.42.0.3", "node-a", true)),
				// Same name, wrong protocol: not an endpoint of "dns".
				sliceProto("dns", "dns-3", "dns", v1.ProtocolTCP, 9999, ep("10.42.0.4", "node-a", true)),
				slice("dns", "dns-4", "", 9153, ep("10.42.0.3", "node-a", true)),
			},
			chains: map[string][]string{
				"svc-default/dns/udp/dns":     {masq, "meta l4proto udp dnat ip to numgen random mod 1 map { 0 : 10.42.0.3 . 5353 }"},
				"svc-default/dns/tcp/dns-tcp": {masq, "meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.42.0.3 . 5353 }"},
				"svc-default/dns/tcp/9153":    {masq, "meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.42.0.3 . 9153 }"},
			},
			sets: map[string][]string{
				"service-ips": {
					"10.43.0.10 . tcp . 53 : goto svc-default/dns/tcp/dns-tcp",
					"10.43.0.10 . tcp . 9153 : goto svc-default/dns/tcp/9153",
					"10.43.0.10 . udp . 53 : goto svc-default/dns/udp/dns",
				},
				// One element for the address, whatever its ports.
				"hairpin-endpoints": {"10.42.0.3 . 10.42.0.3"},
			},
		},
		{
			name: "load balancer ingress IPs are external destinations",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.50"}}
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			sets: map[string][]string{
				"service-ips": {"10.43.0.20 . tcp . 80 : goto " + svcWeb, "192.0.2.50 . tcp . 80 : goto " + extWeb},
				// orch's service LB: the port answers on every node
				// address, as k3s' svclb hostPorts do.
				"service-nodeports": {"tcp . 80 : goto " + extWeb, "tcp . 30080 : goto " + extWeb},
			},
		},
		{
			name: "another implementation's load balancer is not served on node addresses",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.LoadBalancerClass = ptr.To("example.com/lb")
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.50"}}
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			sets: map[string][]string{
				"service-ips":       {"10.43.0.20 . tcp . 80 : goto " + svcWeb, "192.0.2.50 . tcp . 80 : goto " + extWeb},
				"service-nodeports": {"tcp . 30080 : goto " + extWeb},
			},
		},
		{
			name: "a pending load balancer (its port is taken) gets only its node port",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			sets: map[string][]string{
				"service-ips":       {"10.43.0.20 . tcp . 80 : goto " + svcWeb},
				"service-nodeports": {"tcp . 30080 : goto " + extWeb},
			},
		},
		{
			name: "a load balancer without endpoints refuses on its node address port",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.10"}}
				return s
			}()},
			sets: map[string][]string{
				"service-nodeports":     {},
				"no-endpoint-nodeports": {"tcp . 80 : goto reject-chain", "tcp . 30080 : goto reject-chain"},
				"no-endpoint-services":  {"10.43.0.20 . tcp . 80 : goto reject-chain", "192.0.2.10 . tcp . 80 : goto reject-chain"},
			},
		},
		{
			name: "load balancer source ranges guard the LB addresses, not the node port or external IPs",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.ExternalIPs = []string{"192.0.2.60"}
				s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24", " 198.51.100.7/32", "2001:db8::/32"}
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.10"}}
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			chains: map[string][]string{
				"fw-default/web/tcp/http": {
					"ip saddr 203.0.113.0/24 goto " + extWeb,
					"ip saddr 198.51.100.7 goto " + extWeb,
					"ip saddr @nodeport-ips goto " + extWeb,
					"drop",
				},
			},
			sets: map[string][]string{
				"service-ips": {
					"10.43.0.20 . tcp . 80 : goto " + svcWeb,
					"192.0.2.10 . tcp . 80 : goto fw-default/web/tcp/http",
					"192.0.2.60 . tcp . 80 : goto " + extWeb,
				},
				"service-nodeports": {"tcp . 80 : goto fw-default/web/tcp/http", "tcp . 30080 : goto " + extWeb},
			},
		},
		{
			name: "IPv6 source ranges do not guard IPv4",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.LoadBalancerSourceRanges = []string{"2001:db8::/32"}
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.10"}}
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			chains: map[string][]string{"fw-default/web/tcp/http": nil},
			sets: map[string][]string{
				"service-nodeports": {"tcp . 80 : goto " + extWeb, "tcp . 30080 : goto " + extWeb},
			},
		},
		{
			name: "load balancer with external traffic policy Local",
			services: []*v1.Service{func() *v1.Service {
				s := svc("web", "10.43.0.20", tcpPort("http", 80, 30080))
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.10"}}
				return s
			}()},
			slices: []*discoveryv1.EndpointSlice{twoEndpoints},
			chains: map[string][]string{
				extWeb: {
					"ip saddr 10.42.0.0/16 goto " + svcWeb,
					"ip saddr @nodeport-ips jump mark-for-masquerade",
					"ip saddr @nodeport-ips goto " + svcWeb,
					"goto " + svlWeb,
				},
				svlWeb: {masq, dnat1},
			},
			sets: map[string][]string{
				"service-ips":       {"10.43.0.20 . tcp . 80 : goto " + svcWeb, "192.0.2.10 . tcp . 80 : goto " + extWeb},
				"service-nodeports": {"tcp . 80 : goto " + extWeb, "tcp . 30080 : goto " + extWeb},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := unitConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			rs := Build(cfg, tc.services, tc.slices)
			for name, want := range tc.chains {
				c := rs.Chain(name)
				if want == nil {
					if c != nil {
						t.Errorf("chain %s exists, want none:\n%s", name, strings.Join(c.RuleStrings(), "\n"))
					}
					continue
				}
				if c == nil {
					t.Errorf("chain %s missing; ruleset:\n%s", name, rs)
					continue
				}
				if d := cmp.Diff(want, c.RuleStrings()); d != "" {
					t.Errorf("chain %s (-want +got):\n%s", name, d)
				}
			}
			for name, want := range tc.sets {
				s := rs.Set(name)
				if s == nil {
					t.Errorf("set %s missing", name)
					continue
				}
				if d := cmp.Diff(want, s.ElementStrings()); d != "" {
					t.Errorf("set %s (-want +got):\n%s", name, d)
				}
			}
			checkReferences(t, rs)
		})
	}
}

// checkReferences verifies every jump, goto and @set names something that
// exists, which the kernel would otherwise reject for the whole batch.
func checkReferences(t *testing.T, rs *Ruleset) {
	t.Helper()
	text := rs.String()
	for _, f := range strings.Fields(text) {
		if strings.HasPrefix(f, "@") {
			if rs.Set(strings.TrimPrefix(f, "@")) == nil {
				t.Errorf("reference to undefined set %s", f)
			}
		}
	}
	words := strings.Fields(strings.NewReplacer(",", " ", "}", " ").Replace(text))
	for i, w := range words {
		if (w == "goto" || w == "jump") && i+1 < len(words) && rs.Chain(words[i+1]) == nil {
			t.Errorf("%s to undefined chain %s", w, words[i+1])
		}
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	svcs, sls := generate(50, 5)
	want := Build(unitConfig(), svcs, sls).String()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5; i++ {
		s2, l2 := slices.Clone(svcs), slices.Clone(sls)
		r.Shuffle(len(s2), func(i, j int) { s2[i], s2[j] = s2[j], s2[i] })
		r.Shuffle(len(l2), func(i, j int) { l2[i], l2[j] = l2[j], l2[i] })
		if got := Build(unitConfig(), s2, l2).String(); got != want {
			t.Fatalf("shuffled input gave a different ruleset:\n%s", cmp.Diff(want, got))
		}
	}
}

func TestBuildDuplicateExternalIPs(t *testing.T) {
	a := svc("a", "10.43.0.1", tcpPort("http", 80, 0))
	b := svc("b", "10.43.0.2", tcpPort("http", 80, 0))
	a.Spec.ExternalIPs = []string{"192.0.2.1"}
	b.Spec.ExternalIPs = []string{"192.0.2.1"}
	rs := Build(unitConfig(), []*v1.Service{a, b}, []*discoveryv1.EndpointSlice{
		slice("a", "a-1", "http", 80, ep("10.42.0.1", "", true)),
		slice("b", "b-1", "http", 80, ep("10.42.0.2", "", true)),
	})
	var n int
	for _, e := range rs.Set("service-ips").ElementStrings() {
		if strings.HasPrefix(e, "192.0.2.1 ") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("external IP appears %d times in service-ips, want 1 (the kernel refuses duplicates)", n)
	}
}

// generate makes n services with m endpoints each, spread over 3 nodes.
func generate(n, m int) ([]*v1.Service, []*discoveryv1.EndpointSlice) {
	var svcs []*v1.Service
	var sls []*discoveryv1.EndpointSlice
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%d", i)
		s := svc(name, fmt.Sprintf("10.43.%d.%d", i/250, i%250+1), tcpPort("http", 80, 0))
		if i%10 == 0 {
			s.Spec.Type = v1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = int32(30000 + i)
		}
		if i%7 == 0 {
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		}
		svcs = append(svcs, s)
		var eps []discoveryv1.Endpoint
		for j := 0; j < m; j++ {
			k := i*m + j
			eps = append(eps, ep(fmt.Sprintf("10.42.%d.%d", k/250, k%250+1), fmt.Sprintf("node-%d", k%3), true))
		}
		sls = append(sls, slice(name, name+"-abc", "http", 8080, eps...))
	}
	return svcs, sls
}

// BenchmarkBuild measures ruleset generation for 1,000 services with
// 10,000 endpoints.
func BenchmarkBuild(b *testing.B) {
	svcs, sls := generate(1000, 10)
	cfg := unitConfig()
	b.ReportAllocs()
	for b.Loop() {
		Build(cfg, svcs, sls)
	}
}

// TestBuilderReusesUnchangedServices: a Builder gives what Build gives,
// and shares the chains of Services whose objects did not change.
func TestBuilderReusesUnchangedServices(t *testing.T) {
	cfg := unitConfig()
	svcs, sls := generate(20, 3)
	b := NewBuilder(cfg)
	first := b.Build(svcs, sls)

	changed := slices.Clone(sls)
	changed[4] = slice("svc-4", "svc-4-abc", "http", 8080, ep("10.42.9.9", "node-a", true))
	renamed := svcs[7].DeepCopy()
	renamed.Spec.Ports[0].Name = "web"
	moreSvcs := append(slices.Clone(svcs), svc("extra", "10.43.9.9", udpPort("dns", 53)))
	moreSvcs[7] = renamed
	// The caller's order must not matter.
	slices.Reverse(moreSvcs)
	slices.Reverse(changed)
	second := b.Build(moreSvcs, changed)
	if got, want := second.String(), Build(cfg, moreSvcs, changed).String(); got != want {
		t.Fatalf("Builder and Build differ:\n%s\n---\n%s", got, want)
	}

	firstChains := map[string]*Chain{}
	for _, c := range first.Chains {
		firstChains[c.Name] = c
	}
	for _, c := range second.Chains {
		prev := firstChains[c.Name]
		if prev == nil || c.Hook != nil || strings.HasSuffix(c.Name, "check") || !strings.Contains(c.Name, "/") {
			continue // new, or a fixed chain (always rebuilt)
		}
		rebuilt := strings.Contains(c.Name, "/svc-4/") || strings.Contains(c.Name, "/svc-7/")
		if shared := prev == c; shared == rebuilt {
			t.Errorf("chain %s: shared with the previous ruleset = %v, want %v", c.Name, shared, !rebuilt)
		}
	}
}

// BenchmarkBuildEndpointChange is BenchmarkBuild when one endpoint of one
// Service changed since the previous build.
func BenchmarkBuildEndpointChange(b *testing.B) {
	svcs, sls := generate(1000, 10)
	moved := slices.Clone(sls)
	moved[500] = sls[500].DeepCopy()
	moved[500].Endpoints[0].Addresses = []string{"10.42.200.200"}
	states := [][]*discoveryv1.EndpointSlice{moved, sls}
	bld := NewBuilder(unitConfig())
	bld.Build(svcs, sls)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		bld.Build(svcs, states[i%2])
	}
}
