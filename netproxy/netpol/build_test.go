package netpol

import (
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/netproxy/proxy"
)

const node = "n1"

func testPod(ns, name, nodeName, ip string, lbls map[string]string, ports ...v1.ContainerPort) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Spec:       v1.PodSpec{NodeName: nodeName, Containers: []v1.Container{{Name: "c", Ports: ports}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: ip, PodIPs: []v1.PodIP{{IP: ip}}},
	}
}

func testNS(name string, lbls map[string]string) *v1.Namespace {
	return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

func policy(ns, name string, sel map[string]string, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel},
			PolicyTypes: types, Ingress: in, Egress: eg},
	}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	tcp, udp    = v1.ProtocolTCP, v1.ProtocolUDP
)

func port(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }

func namedPort(n string) *intstr.IntOrString { v := intstr.FromString(n); return &v }

// cluster is the pods and namespaces every case starts from: server and
// client pods on this node, a pod on another node, a host-network pod and
// a finished pod.
func cluster() State {
	return State{
		Namespaces: []*v1.Namespace{
			testNS("app", map[string]string{"team": "a"}),
			testNS("other", map[string]string{"team": "b"}),
		},
		Pods: []*v1.Pod{
			testPod("app", "web", node, "10.42.0.2", map[string]string{"app": "web"},
				v1.ContainerPort{Name: "http", ContainerPort: 8080}),
			testPod("app", "client", node, "10.42.0.3", map[string]string{"app": "client"}),
			testPod("other", "remote", "n2", "10.42.1.2", map[string]string{"app": "client"},
				v1.ContainerPort{Name: "http", ContainerPort: 9090}),
			func() *v1.Pod {
				p := testPod("app", "host", node, "198.18.0.1", map[string]string{"app": "client"})
				p.Spec.HostNetwork = true
				return p
			}(),
			func() *v1.Pod {
				p := testPod("app", "done", node, "10.42.0.9", map[string]string{"app": "client"})
				p.Status.Phase = v1.PodSucceeded
				return p
			}(),
		},
	}
}

func TestBuild(t *testing.T) {
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		// chains maps chain names to their rules; chains not named must
		// not exist (besides forward).
		chains map[string][]string
		// sets maps set names to their elements.
		sets map[string][]string
	}{{
		name:   "no policy: nothing filtered",
		chains: map[string][]string{},
		sets:   map[string][]string{"ingress-pods": {}, "egress-pods": {}},
	}, {
		name:     "default deny ingress",
		policies: []*networkingv1.NetworkPolicy{policy("app", "deny", nil, ingressOnly, nil, nil)},
		chains: map[string][]string{
			"ingress-app/client": {"drop"},
			"ingress-app/web":    {"drop"},
		},
		sets: map[string][]string{
			"ingress-pods": {"10.42.0.3 : goto ingress-app/client", "10.42.0.2 : goto ingress-app/web"},
			"egress-pods":  {},
		},
	}, {
		name: "policyTypes defaulted from the rules",
		policies: []*networkingv1.NetworkPolicy{policy("app", "both", map[string]string{"app": "web"}, nil, nil,
			[]networkingv1.NetworkPolicyEgressRule{{}})},
		chains: map[string][]string{
			"ingress-app/web": {"drop"},
			"egress-app/web":  {"return", "drop"},
		},
		sets: map[string][]string{
			"ingress-pods": {"10.42.0.2 : goto ingress-app/web"},
			"egress-pods":  {"10.42.0.2 : jump egress-app/web"},
		},
	}, {
		name: "allow by pod label in the policy's namespace, numeric port",
		policies: []*networkingv1.NetworkPolicy{policy("app", "allow", map[string]string{"app": "web"}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: port(8080)}, {Protocol: &udp, Port: port(53), EndPort: ptr.To[int32](60)}},
			}}, nil)},
		chains: map[string][]string{
			"ingress-app/web": {
				"ip saddr @app/allow/ingress/0 meta l4proto tcp th dport 8080 accept",
				"ip saddr @app/allow/ingress/0 meta l4proto udp th dport 53-60 accept",
				"drop",
			},
		},
		// Only app/client: remote is in another namespace, host and done
		// have no pod address that counts.
		sets: map[string][]string{"app/allow/ingress/0": {"10.42.0.3"}},
	}, {
		name: "namespace selector, both selectors in one peer, and a separate pod peer",
		policies: []*networkingv1.NetworkPolicy{policy("app", "ns", map[string]string{"app": "web"}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}}}},
				{From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "app"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nothing"}},
				}}},
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}},
			}, nil)},
		chains: map[string][]string{
			"ingress-app/web": {"ip saddr @app/ns/ingress/0 accept", "ip saddr @app/ns/ingress/1 accept", "ip saddr @app/ns/ingress/2 accept", "drop"},
		},
		sets: map[string][]string{
			"app/ns/ingress/0": {"10.42.1.2"},
			"app/ns/ingress/1": {},
			"app/ns/ingress/2": {"10.42.0.3", "10.42.0.2", "10.42.1.2"},
		},
	}, {
		name: "ipBlock with except, any port of a protocol",
		policies: []*networkingv1.NetworkPolicy{policy("app", "cidr", map[string]string{"app": "client"}, egressOnly, nil,
			[]networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0/15", Except: []string{"198.18.5.0/24", "198.18.6.7/32"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp}},
			}})},
		chains: map[string][]string{
			"egress-app/client": {"ip daddr 198.18.0.0/15 ip daddr != 198.18.5.0/24 ip daddr != 198.18.6.7 meta l4proto udp return", "drop"},
		},
	}, {
		name: "named ports: ingress on the pod itself, egress on each destination",
		policies: []*networkingv1.NetworkPolicy{
			policy("app", "in", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Port: namedPort("http")}, {Protocol: &tcp, Port: namedPort("missing")}},
			}}, nil),
			policy("app", "out", map[string]string{"app": "client"}, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: namedPort("http")}},
			}}),
		},
		chains: map[string][]string{
			"ingress-app/web":    {"meta l4proto tcp th dport 8080 accept", "drop"},
			"ingress-app/client": {"drop"},
			"egress-app/client":  {"ip daddr . meta l4proto . th dport vmap @app/out/egress/0/named", "drop"},
		},
		sets: map[string][]string{
			"app/out/egress/0/named": {"10.42.0.2 . tcp . 8080 : return", "10.42.1.2 . tcp . 9090 : return"},
		},
	}, {
		name: "rules of several policies add up",
		policies: []*networkingv1.NetworkPolicy{
			policy("app", "a", map[string]string{"app": "web"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Port: port(80)}},
			}}, nil),
			policy("app", "b", map[string]string{"app": "web"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Port: port(443)}},
			}}, nil),
			// Another namespace's policy never selects app's pods.
			policy("other", "deny", nil, ingressOnly, nil, nil),
		},
		chains: map[string][]string{
			"ingress-app/web": {"meta l4proto tcp th dport 80 accept", "meta l4proto tcp th dport 443 accept", "drop"},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := cluster()
			st.Policies = tc.policies
			rs, warnings := Build(Config{NodeName: node}, st)
			if len(warnings) > 0 {
				t.Fatalf("warnings: %v", warnings)
			}
			fwd := rs.Chain("forward")
			if fwd == nil || fwd.Hook == nil || fwd.Hook.Point != proxy.HookForward {
				t.Fatalf("no forward base chain:\n%s", rs)
			}
			for _, c := range rs.Chains {
				if c.Name == "forward" {
					continue
				}
				want, ok := tc.chains[c.Name]
				if !ok {
					t.Errorf("unexpected chain %q:\n%s", c.Name, rs)
					continue
				}
				got := c.RuleStrings()
				// Every pod chain starts by letting the pod reach itself.
				if self := selfRule(st, c.Name); len(got) == 0 || got[0] != self {
					t.Errorf("chain %q does not start with %q: %q", c.Name, self, got)
				} else {
					got = got[1:]
				}
				if !slices.Equal(got, want) {
					t.Errorf("chain %q:\n got %q\nwant %q", c.Name, got, want)
				}
			}
			for name := range tc.chains {
				if rs.Chain(name) == nil {
					t.Errorf("chain %q missing:\n%s", name, rs)
				}
			}
			for name, want := range tc.sets {
				s := rs.Set(name)
				if s == nil {
					t.Errorf("set %q missing:\n%s", name, rs)
					continue
				}
				if got := s.ElementStrings(); !slices.Equal(got, want) {
					t.Errorf("set %q:\n got %q\nwant %q", name, got, want)
				}
			}
		})
	}
}

// selfRule is the rule that lets the pod of a chain reach itself.
func selfRule(st State, chain string) string {
	dir, name, _ := strings.Cut(chain, "-")
	for _, p := range st.Pods {
		if p.Namespace+"/"+p.Name == name {
			if dir == "egress" {
				return "ip daddr " + p.Status.PodIP + " return"
			}
			return "ip saddr " + p.Status.PodIP + " accept"
		}
	}
	return "no pod for chain " + chain
}

func TestBuildIsStable(t *testing.T) {
	st := cluster()
	st.Policies = []*networkingv1.NetworkPolicy{policy("app", "deny", nil, ingressOnly, nil, nil)}
	a, _ := Build(Config{NodeName: node}, st)
	slices.Reverse(st.Pods)
	b, _ := Build(Config{NodeName: node}, st)
	if a.String() != b.String() {
		t.Errorf("order of pods changed the rules:\n%s\n%s", a, b)
	}
}

func TestBuildWarnsOfBadSelectors(t *testing.T) {
	st := cluster()
	bad := policy("app", "bad", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}}},
	}}, nil)
	st.Policies = []*networkingv1.NetworkPolicy{bad}
	rs, warnings := Build(Config{NodeName: node}, st)
	if len(warnings) != 1 || warnings[0].Name != "bad" || !strings.Contains(warnings[0].Err.Error(), "spec.ingress[0].peers[0]") {
		t.Fatalf("warnings = %v", warnings)
	}
	// Fail closed: the pods the policy selects are isolated, the bad
	// peer allows nothing.
	if c := rs.Chain("ingress-app/web"); c == nil || !slices.Equal(c.RuleStrings(), []string{"ip saddr 10.42.0.2 accept", "drop"}) {
		t.Errorf("pods of a policy with a bad peer must stay isolated:\n%s", rs)
	}
}

func TestObjectName(t *testing.T) {
	long := strings.Repeat("x", 300)
	a, b := objectName(long+"a"), objectName(long+"b")
	if len(a) > maxNameLen || a == b {
		t.Errorf("objectName: %q, %q", a, b)
	}
	if objectName("ingress-a/b") != "ingress-a/b" {
		t.Error("short names must stay readable")
	}
}
