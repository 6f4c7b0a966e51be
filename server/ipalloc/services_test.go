package ipalloc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/registry"
)

func newServices(t *testing.T, cidr, ports string, opts ...Option) *Services {
	t.Helper()
	pr, err := ParsePortRange(ports)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServices(netip.MustParsePrefix(cidr), pr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// service is a ClusterIP Service with one TCP port named http; edits
// adjust it.
func service(name string, edits ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80,
				TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, e := range edits {
		e(s)
	}
	return s
}

func withType(t corev1.ServiceType) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Type = t }
}

func withClusterIP(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.ClusterIP = ip }
}

func withNodePorts(nps ...int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		for i, np := range nps {
			if i < len(s.Spec.Ports) {
				s.Spec.Ports[i].NodePort = np
			}
		}
	}
}

func withPorts(ports ...corev1.ServicePort) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports = ports }
}

func port(name string, proto corev1.Protocol, p, np int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: p, NodePort: np, TargetPort: intstr.FromInt32(p)}
}

func localLB(s *corev1.Service) {
	s.Spec.Type = corev1.ServiceTypeLoadBalancer
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

// checkErr compares err with a wanted "field: message" (an Invalid error),
// "internal: message" (an InternalError) or "" (no error).
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if msg, ok := strings.CutPrefix(want, "internal: "); ok {
		if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), msg) {
			t.Fatalf("error %v, want an internal error %q", err, msg)
		}
		return
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error %v is not Invalid", err)
	}
	causes := err.(apierrors.APIStatus).Status().Details.Causes
	wantField, wantMsg, _ := strings.Cut(want, ": ")
	var got []string
	for _, c := range causes {
		// The cause message starts with the value ("Invalid value: 30080: ...").
		if c.Field == wantField && strings.HasSuffix(c.Message, wantMsg) {
			return
		}
		got = append(got, c.Field+": "+c.Message)
	}
	t.Fatalf("causes %q, want %q", got, want)
}

func nodePortsOf(s *corev1.Service) []int32 {
	var out []int32
	for _, p := range s.Spec.Ports {
		out = append(out, p.NodePort)
	}
	return out
}

func TestBeforeCreate(t *testing.T) {
	ctx := context.Background()
	type taken struct {
		ips   []string
		ports []int
	}
	tests := []struct {
		name    string
		taken   taken
		svc     *corev1.Service
		wantErr string
		check   func(t *testing.T, s *Services, svc *corev1.Service)
	}{{
		name: "clusterIP allocated",
		svc:  service("web"),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			ip := netip.MustParseAddr(svc.Spec.ClusterIP)
			if !s.IPs().Has(ip) || !slices.Equal(svc.Spec.ClusterIPs, []string{svc.Spec.ClusterIP}) {
				t.Errorf("clusterIP %q clusterIPs %q not allocated or not in sync", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
			}
			if !slices.Equal(svc.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}) ||
				*svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
				t.Errorf("families %v policy %v", svc.Spec.IPFamilies, *svc.Spec.IPFamilyPolicy)
			}
			if svc.Spec.Ports[0].NodePort != 0 || s.NodePorts().Free() != 2768 {
				t.Errorf("a ClusterIP service got node ports")
			}
		},
	}, {
		name: "kubernetes service asks for the first address",
		svc:  service("kubernetes", withClusterIP("10.43.0.1")),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if !s.IPs().Has(netip.MustParseAddr("10.43.0.1")) || svc.Spec.ClusterIPs[0] != "10.43.0.1" {
				t.Errorf("10.43.0.1 not allocated: %v", svc.Spec.ClusterIPs)
			}
		},
	}, {
		name:    "clusterIP taken",
		taken:   taken{ips: []string{"10.43.0.10"}},
		svc:     service("dns", withClusterIP("10.43.0.10")),
		wantErr: "spec.clusterIPs: failed to allocate IP 10.43.0.10: provided IP is already allocated",
	}, {
		name:    "clusterIP outside the CIDR",
		svc:     service("web", withClusterIP("10.44.0.1")),
		wantErr: "spec.clusterIPs: failed to allocate IP 10.44.0.1: provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16",
	}, {
		name:    "network address",
		svc:     service("web", withClusterIP("10.43.0.0")),
		wantErr: "spec.clusterIPs: failed to allocate IP 10.43.0.0: provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16",
	}, {
		name: "clusterIPs only",
		svc:  service("web", func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.43.1.1"} }),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if svc.Spec.ClusterIP != "10.43.1.1" || !s.IPs().Has(netip.MustParseAddr("10.43.1.1")) {
				t.Errorf("clusterIP = %q", svc.Spec.ClusterIP)
			}
		},
	}, {
		name: "headless with selector",
		svc:  service("db", withClusterIP(corev1.ClusterIPNone)),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if s.IPs().Free() != s.IPs().Size() || svc.Spec.ClusterIP != "None" {
				t.Errorf("headless service allocated an address: %v", svc.Spec.ClusterIPs)
			}
			if !slices.Equal(svc.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}) {
				t.Errorf("families %v", svc.Spec.IPFamilies)
			}
		},
	}, {
		name: "headless without selector is dual-stack",
		svc:  service("ext", withClusterIP(corev1.ClusterIPNone), func(s *corev1.Service) { s.Spec.Selector = nil }),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyRequireDualStack ||
				!slices.Equal(svc.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}) {
				t.Errorf("policy %v families %v", *svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies)
			}
		},
	}, {
		name: "ExternalName gets nothing",
		svc: service("ext", withType(corev1.ServiceTypeExternalName), func(s *corev1.Service) {
			s.Spec.ExternalName = "example.com"
		}),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if svc.Spec.ClusterIP != "" || s.IPs().Free() != s.IPs().Size() || svc.Spec.IPFamilyPolicy != nil {
				t.Errorf("ExternalName service changed: %+v", svc.Spec)
			}
		},
	}, {
		name:    "dual-stack required",
		svc:     service("web", func(s *corev1.Service) { s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack) }),
		wantErr: "spec.ipFamilyPolicy: this cluster is not configured for dual-stack services",
	}, {
		name:    "IPv6 family",
		svc:     service("web", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }),
		wantErr: "spec.ipFamilies[0]: not configured on this cluster",
	}, {
		name:    "IPv6 clusterIP",
		svc:     service("web", withClusterIP("fd00::1")),
		wantErr: "spec.clusterIPs[0]: IPv6 is not configured on this cluster",
	}, {
		name: "NodePort allocates every port, TCP and UDP of one port share",
		svc: service("dns", withType(corev1.ServiceTypeNodePort), withPorts(
			port("dns-udp", corev1.ProtocolUDP, 53, 0), port("dns-tcp", corev1.ProtocolTCP, 53, 0),
			port("metrics", corev1.ProtocolTCP, 9153, 0))),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			nps := nodePortsOf(svc)
			if nps[0] == 0 || nps[0] != nps[1] || nps[2] == 0 || nps[2] == nps[0] {
				t.Errorf("node ports %v", nps)
			}
			if s.NodePorts().Free() != 2768-2 || !s.NodePorts().Has(int(nps[0])) || !s.NodePorts().Has(int(nps[2])) {
				t.Errorf("node ports %v not allocated, free %d", nps, s.NodePorts().Free())
			}
		},
	}, {
		name: "shared nodePort named on the later entry",
		svc: service("dns", withType(corev1.ServiceTypeNodePort), withPorts(
			port("dns-udp", corev1.ProtocolUDP, 53, 0), port("dns-tcp", corev1.ProtocolTCP, 53, 30053))),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if nps := nodePortsOf(svc); !slices.Equal(nps, []int32{30053, 30053}) || s.NodePorts().Free() != 2767 {
				t.Errorf("node ports %v, free %d", nps, s.NodePorts().Free())
			}
		},
	}, {
		name: "requested nodePort",
		svc:  service("web", withType(corev1.ServiceTypeNodePort), withNodePorts(30080)),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if !s.NodePorts().Has(30080) || svc.Spec.Ports[0].NodePort != 30080 {
				t.Errorf("30080 not allocated")
			}
		},
	}, {
		name:    "requested nodePort taken",
		taken:   taken{ports: []int{30080}},
		svc:     service("web", withType(corev1.ServiceTypeNodePort), withNodePorts(30080)),
		wantErr: "spec.ports[0].nodePort: provided port is already allocated",
	}, {
		name:    "requested nodePort out of range",
		svc:     service("web", withType(corev1.ServiceTypeNodePort), withNodePorts(8080)),
		wantErr: "spec.ports[0].nodePort: provided port is not in the valid range. The range of valid ports is 30000-32767",
	}, {
		name: "duplicate nodePort for one protocol",
		svc: service("web", withType(corev1.ServiceTypeNodePort), withPorts(
			port("a", corev1.ProtocolTCP, 80, 30080), port("b", corev1.ProtocolTCP, 81, 30080))),
		wantErr: `spec.ports[1].nodePort: Duplicate value: 30080`,
	}, {
		name: "LoadBalancer with local traffic gets a health check port",
		svc:  service("lb", localLB),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			hc := svc.Spec.HealthCheckNodePort
			if hc == 0 || hc == svc.Spec.Ports[0].NodePort || !s.NodePorts().Has(int(hc)) || s.NodePorts().Free() != 2766 {
				t.Errorf("health check port %d, node ports %v", hc, nodePortsOf(svc))
			}
		},
	}, {
		name:    "requested health check port taken",
		taken:   taken{ports: []int{31000}},
		svc:     service("lb", localLB, func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 31000 }),
		wantErr: "spec.healthCheckNodePort: failed to allocate requested HealthCheck NodePort 31000: provided port is already allocated",
	}, {
		name: "health check port equal to a node port of the service",
		svc: service("lb", localLB, withNodePorts(31000), func(s *corev1.Service) {
			s.Spec.HealthCheckNodePort = 31000
		}),
		wantErr: "spec.healthCheckNodePort: failed to allocate requested HealthCheck NodePort 31000: provided port is already allocated",
	}, {
		name: "LoadBalancer without node ports keeps requested ones only",
		svc: service("lb", withType(corev1.ServiceTypeLoadBalancer), withPorts(
			port("a", corev1.ProtocolTCP, 80, 0), port("b", corev1.ProtocolTCP, 443, 30443)),
			func(s *corev1.Service) { s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false) }),
		check: func(t *testing.T, s *Services, svc *corev1.Service) {
			if nps := nodePortsOf(svc); !slices.Equal(nps, []int32{0, 30443}) || s.NodePorts().Free() != 2767 {
				t.Errorf("node ports %v, free %d", nps, s.NodePorts().Free())
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServices(t, "10.43.0.0/16", DefaultNodePortRange)
			for _, ip := range tt.taken.ips {
				if err := s.IPs().Allocate(netip.MustParseAddr(ip)); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range tt.taken.ports {
				if err := s.NodePorts().Allocate(p); err != nil {
					t.Fatal(err)
				}
			}
			freeIPs, freePorts := s.IPs().Free(), s.NodePorts().Free()
			err := s.BeforeCreate(ctx, tt.svc)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				// A refused create leaves nothing allocated.
				if s.IPs().Free() != freeIPs || s.NodePorts().Free() != freePorts {
					t.Errorf("refused create leaked: free IPs %d→%d, ports %d→%d",
						freeIPs, s.IPs().Free(), freePorts, s.NodePorts().Free())
				}
				return
			}
			if tt.check != nil {
				tt.check(t, s, tt.svc)
			}
			// Deleting gives everything back.
			s.AfterDelete(ctx, tt.svc)
			if s.IPs().Free() != freeIPs || s.NodePorts().Free() != freePorts {
				t.Errorf("delete did not release everything: free IPs %d→%d, ports %d→%d",
					freeIPs, s.IPs().Free(), freePorts, s.NodePorts().Free())
			}
		})
	}
}

// TestCreateRollback fails creates at a later step and checks that what
// the earlier steps allocated is given back.
func TestCreateRollback(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		taken   []int // node ports of range 30000-30009 taken beforehand
		svc     *corev1.Service
		wantErr string
	}{{
		name:  "third node port taken",
		taken: []int{30009},
		svc: service("web", withType(corev1.ServiceTypeNodePort), withClusterIP("10.43.5.5"), withPorts(
			// The requested port comes first: an automatic one allocated
			// before it could take the same number.
			port("a", corev1.ProtocolTCP, 80, 30001), port("b", corev1.ProtocolTCP, 81, 0),
			port("c", corev1.ProtocolTCP, 82, 30009))),
		wantErr: "spec.ports[2].nodePort: provided port is already allocated",
	}, {
		name:  "health check port taken",
		taken: []int{30009},
		svc: service("lb", localLB, withPorts(port("a", corev1.ProtocolTCP, 80, 0), port("b", corev1.ProtocolTCP, 81, 0)),
			func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 30009 }),
		wantErr: "spec.healthCheckNodePort: failed to allocate requested HealthCheck NodePort 30009: provided port is already allocated",
	}, {
		name:  "node ports run out",
		taken: []int{30000, 30001, 30002, 30003, 30004, 30005, 30006, 30007},
		svc: service("web", withType(corev1.ServiceTypeNodePort), withPorts(
			port("a", corev1.ProtocolTCP, 80, 0), port("b", corev1.ProtocolTCP, 81, 0),
			port("c", corev1.ProtocolTCP, 82, 0))),
		wantErr: "internal: failed to allocate a nodePort: range is full",
	}, {
		name:    "health check port runs out",
		taken:   []int{30000, 30001, 30002, 30003, 30004, 30005, 30006, 30007},
		svc:     service("lb", localLB, withPorts(port("a", corev1.ProtocolTCP, 80, 0), port("b", corev1.ProtocolTCP, 81, 0))),
		wantErr: "internal: failed to allocate a HealthCheck NodePort: range is full",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServices(t, "10.43.0.0/16", "30000-30009")
			for _, p := range tt.taken {
				if err := s.NodePorts().Allocate(p); err != nil {
					t.Fatal(err)
				}
			}
			freePorts := s.NodePorts().Free()
			checkErr(t, s.BeforeCreate(ctx, tt.svc), tt.wantErr)
			if s.IPs().Free() != s.IPs().Size() || s.NodePorts().Free() != freePorts {
				t.Errorf("failed create leaked: free IPs %d of %d, ports %d, want %d",
					s.IPs().Free(), s.IPs().Size(), s.NodePorts().Free(), freePorts)
			}
		})
	}
}

// TestServiceCIDRExhaustion fills a small service CIDR and checks the
// Kubernetes error once it is full.
func TestServiceCIDRExhaustion(t *testing.T) {
	ctx := context.Background()
	s := newServices(t, "10.43.0.0/29", DefaultNodePortRange) // 6 addresses
	for i := range 6 {
		if err := s.BeforeCreate(ctx, service(fmt.Sprintf("s%d", i))); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	err := s.BeforeCreate(ctx, service("s6"))
	checkErr(t, err, "internal: failed to allocate a serviceIP: range is full")
	if got := err.Error(); !strings.Contains(got, "failed to allocate a serviceIP: range is full") {
		t.Errorf("error text %q", got)
	}
	// Headless and ExternalName services still work.
	checkErr(t, s.BeforeCreate(ctx, service("h", withClusterIP("None"))), "")
	checkErr(t, s.BeforeCreate(ctx, service("x", withType(corev1.ServiceTypeExternalName))), "")
}

func TestBeforeUpdate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		old       *corev1.Service
		takenPort int // a port another Service holds
		edit      func(old *corev1.Service) *corev1.Service
		wantErr   string
		ipDelta   int // change of free IPs
		portDelta int // change of free node ports
		check     func(t *testing.T, s *Services, old, svc *corev1.Service)
	}{{
		name: "no change",
		old:  service("web", withType(corev1.ServiceTypeNodePort)),
		edit: func(old *corev1.Service) *corev1.Service { return old.DeepCopy() },
	}, {
		name:      "ClusterIP to NodePort allocates node ports",
		old:       service("web"),
		edit:      func(old *corev1.Service) *corev1.Service { return edit(old, withType(corev1.ServiceTypeNodePort)) },
		portDelta: -1,
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if np := svc.Spec.Ports[0].NodePort; np == 0 || !s.NodePorts().Has(int(np)) {
				t.Errorf("nodePort %d not allocated", np)
			}
			if svc.Spec.ClusterIP != old.Spec.ClusterIP {
				t.Errorf("clusterIP changed %s → %s", old.Spec.ClusterIP, svc.Spec.ClusterIP)
			}
		},
	}, {
		name:      "NodePort to ClusterIP releases node ports",
		old:       service("web", withType(corev1.ServiceTypeNodePort), withNodePorts(30080)),
		edit:      func(old *corev1.Service) *corev1.Service { return edit(old, withType(corev1.ServiceTypeClusterIP)) },
		portDelta: +1,
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if s.NodePorts().Has(30080) || svc.Spec.Ports[0].NodePort != 0 {
				t.Errorf("30080 still allocated or still in the spec (%d)", svc.Spec.Ports[0].NodePort)
			}
		},
	}, {
		name: "a PUT of the manifest keeps allocated values",
		old: service("web", withType(corev1.ServiceTypeNodePort), withPorts(
			port("http", corev1.ProtocolTCP, 80, 0), port("https", corev1.ProtocolTCP, 443, 0))),
		edit: func(*corev1.Service) *corev1.Service {
			return service("web", withType(corev1.ServiceTypeNodePort), withPorts(
				port("https", corev1.ProtocolTCP, 443, 0), port("http", corev1.ProtocolTCP, 80, 0)))
		},
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if svc.Spec.ClusterIP != old.Spec.ClusterIP || !slices.Equal(svc.Spec.ClusterIPs, old.Spec.ClusterIPs) {
				t.Errorf("clusterIP %s → %s", old.Spec.ClusterIP, svc.Spec.ClusterIP)
			}
			if svc.Spec.Ports[0].NodePort != old.Spec.Ports[1].NodePort || svc.Spec.Ports[1].NodePort != old.Spec.Ports[0].NodePort {
				t.Errorf("node ports by name %v → %v", nodePortsOf(old), nodePortsOf(svc))
			}
		},
	}, {
		name: "ports added and removed",
		old: service("web", withType(corev1.ServiceTypeNodePort), withPorts(
			port("a", corev1.ProtocolTCP, 80, 30001), port("b", corev1.ProtocolTCP, 81, 30002))),
		edit: func(old *corev1.Service) *corev1.Service {
			return edit(old, withPorts(port("b", corev1.ProtocolTCP, 81, 30002), port("c", corev1.ProtocolTCP, 82, 0)))
		},
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			np := svc.Spec.Ports[1].NodePort
			if s.NodePorts().Has(30001) || !s.NodePorts().Has(30002) || np == 0 || np == 30001 || !s.NodePorts().Has(int(np)) {
				t.Errorf("node ports after update %v", nodePortsOf(svc))
			}
		},
	}, {
		name: "nodePort changed",
		old:  service("web", withType(corev1.ServiceTypeNodePort), withNodePorts(30001)),
		edit: func(old *corev1.Service) *corev1.Service { return edit(old, withNodePorts(30005)) },
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if s.NodePorts().Has(30001) || !s.NodePorts().Has(30005) {
				t.Errorf("30001 not released or 30005 not allocated")
			}
		},
	}, {
		name:      "nodePort changed to a taken one",
		old:       service("web", withType(corev1.ServiceTypeNodePort), withNodePorts(30001)),
		takenPort: 30005,
		edit:      func(old *corev1.Service) *corev1.Service { return edit(old, withNodePorts(30005)) },
		wantErr:   "spec.ports[0].nodePort: provided port is already allocated",
	}, {
		name: "to ExternalName releases the cluster IP",
		old:  service("web"),
		edit: func(old *corev1.Service) *corev1.Service {
			return edit(old, withType(corev1.ServiceTypeExternalName), func(s *corev1.Service) { s.Spec.ExternalName = "example.com" })
		},
		ipDelta: +1,
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if svc.Spec.ClusterIP != "" || svc.Spec.ClusterIPs != nil || s.IPs().Has(netip.MustParseAddr(old.Spec.ClusterIP)) {
				t.Errorf("cluster IP %q still set or allocated", old.Spec.ClusterIP)
			}
		},
	}, {
		name: "from ExternalName allocates a cluster IP",
		old: service("web", withType(corev1.ServiceTypeExternalName), func(s *corev1.Service) {
			s.Spec.ExternalName = "example.com"
		}),
		edit: func(old *corev1.Service) *corev1.Service {
			return edit(old, withType(corev1.ServiceTypeClusterIP), func(s *corev1.Service) { s.Spec.ExternalName = "" })
		},
		ipDelta: -1,
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil || !s.IPs().Has(ip) {
				t.Errorf("cluster IP %q not allocated", svc.Spec.ClusterIP)
			}
		},
	}, {
		name:      "ClusterIP to local LoadBalancer allocates node and health check ports",
		old:       service("lb"),
		edit:      func(old *corev1.Service) *corev1.Service { return edit(old, localLB) },
		portDelta: -2,
	}, {
		name: "local to cluster traffic releases the health check port",
		old:  service("lb", localLB),
		edit: func(old *corev1.Service) *corev1.Service {
			return edit(old, func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster })
		},
		portDelta: +1,
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if svc.Spec.HealthCheckNodePort != 0 || s.NodePorts().Has(int(old.Spec.HealthCheckNodePort)) {
				t.Errorf("health check port %d kept", old.Spec.HealthCheckNodePort)
			}
		},
	}, {
		name: "health check port omitted on update is kept",
		old:  service("lb", localLB),
		edit: func(old *corev1.Service) *corev1.Service {
			return edit(old, func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 0 })
		},
		check: func(t *testing.T, s *Services, old, svc *corev1.Service) {
			if svc.Spec.HealthCheckNodePort != old.Spec.HealthCheckNodePort {
				t.Errorf("health check port %d → %d", old.Spec.HealthCheckNodePort, svc.Spec.HealthCheckNodePort)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServices(t, "10.43.0.0/16", DefaultNodePortRange)
			if tt.takenPort != 0 {
				if err := s.NodePorts().Allocate(tt.takenPort); err != nil {
					t.Fatal(err)
				}
			}
			old := tt.old
			if err := s.BeforeCreate(ctx, old); err != nil {
				t.Fatal(err)
			}
			freeIPs, freePorts := s.IPs().Free(), s.NodePorts().Free()
			svc := tt.edit(old)
			err := s.BeforeUpdate(ctx, svc, old)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				svc = old // the stored object stays
				tt.ipDelta, tt.portDelta = 0, 0
			}
			if d := s.IPs().Free() - freeIPs; d != tt.ipDelta {
				t.Errorf("free IPs changed by %d, want %d", d, tt.ipDelta)
			}
			if d := s.NodePorts().Free() - freePorts; d != tt.portDelta {
				t.Errorf("free node ports changed by %d, want %d", d, tt.portDelta)
			}
			if tt.check != nil && err == nil {
				tt.check(t, s, old, svc)
			}
			// What the stored object names is exactly what is allocated.
			s.AfterDelete(ctx, svc)
			if tt.takenPort != 0 {
				s.NodePorts().Release(tt.takenPort)
			}
			if s.IPs().Free() != s.IPs().Size() || s.NodePorts().Free() != s.NodePorts().Range().Size {
				t.Errorf("after delete: free IPs %d of %d, node ports %d of %d",
					s.IPs().Free(), s.IPs().Size(), s.NodePorts().Free(), s.NodePorts().Range().Size)
			}
		})
	}
}

func edit(old *corev1.Service, edits ...func(*corev1.Service)) *corev1.Service {
	s := old.DeepCopy()
	for _, e := range edits {
		e(s)
	}
	return s
}

// TestBeginUpdateFinish checks that a failed write keeps what the stored
// object holds and gives back what the update took, and that a successful
// one releases what the object gave up.
func TestBeginUpdateFinish(t *testing.T) {
	ctx := context.Background()
	s := newServices(t, "10.43.0.0/16", DefaultNodePortRange)
	old := service("web", withType(corev1.ServiceTypeNodePort), withPorts(
		port("a", corev1.ProtocolTCP, 80, 30001), port("b", corev1.ProtocolTCP, 81, 30002)))
	if err := s.BeforeCreate(ctx, old); err != nil {
		t.Fatal(err)
	}
	update := func() *corev1.Service {
		return edit(old, withPorts(port("b", corev1.ProtocolTCP, 81, 30002), port("c", corev1.ProtocolTCP, 82, 30003)))
	}
	held := func(want ...int) {
		t.Helper()
		for _, p := range []int{30001, 30002, 30003} {
			if s.NodePorts().Has(p) != slices.Contains(want, p) {
				t.Errorf("Has(%d) = %v, want %v", p, !slices.Contains(want, p), slices.Contains(want, p))
			}
		}
	}

	finish, err := s.BeginUpdate(ctx, update(), old)
	if err != nil {
		t.Fatal(err)
	}
	held(30001, 30002, 30003) // nothing released before the write
	finish(ctx, false)
	held(30001, 30002)
	finish(ctx, true) // a second call does nothing
	held(30001, 30002)

	// The retry of the same update (after a conflict) succeeds.
	finish, err = s.BeginUpdate(ctx, update(), old)
	if err != nil {
		t.Fatal(err)
	}
	finish(ctx, true)
	held(30002, 30003)

	// BeginCreate reverted leaves nothing.
	fresh := service("other", withType(corev1.ServiceTypeNodePort), withNodePorts(30004))
	finish, err = s.BeginCreate(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	finish(ctx, false)
	if s.NodePorts().Has(30004) || s.IPs().Has(netip.MustParseAddr(fresh.Spec.ClusterIP)) {
		t.Errorf("reverted create kept its allocations")
	}
}

func TestRestore(t *testing.T) {
	var logs bytes.Buffer
	s := newServices(t, "10.43.0.0/16", DefaultNodePortRange,
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	stored := []corev1.Service{
		*service("kubernetes", withClusterIP("10.43.0.1")),
		*service("a", withType(corev1.ServiceTypeNodePort), withClusterIP("10.43.0.10"), withNodePorts(30080)),
		*service("dup-ip", withClusterIP("10.43.0.10")),
		*service("old-cidr", withType(corev1.ServiceTypeNodePort), withClusterIP("10.44.0.1"), withNodePorts(30080)),
		*service("dns", localLB, withClusterIP("10.43.0.53"), withPorts(
			port("udp", corev1.ProtocolUDP, 53, 30053), port("tcp", corev1.ProtocolTCP, 53, 30053)),
			func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 30090 }),
		*service("headless", withClusterIP("None")),
		*service("ext", withType(corev1.ServiceTypeExternalName)),
		*service("cip-with-stray-nodeport", withClusterIP("10.43.0.11"), withNodePorts(30100)),
	}
	s.Restore(stored)

	for _, ip := range []string{"10.43.0.1", "10.43.0.10", "10.43.0.11", "10.43.0.53"} {
		if !s.IPs().Has(netip.MustParseAddr(ip)) {
			t.Errorf("%s not restored", ip)
		}
	}
	if got, want := s.IPs().Free(), s.IPs().Size()-4; got != want {
		t.Errorf("free IPs %d, want %d", got, want)
	}
	for _, p := range []int{30080, 30053, 30090} {
		if !s.NodePorts().Has(p) {
			t.Errorf("node port %d not restored", p)
		}
	}
	if got, want := s.NodePorts().Free(), 2768-3; got != want {
		t.Errorf("free node ports %d, want %d", got, want)
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 3 {
		t.Errorf("%d warnings, want 3 (dup-ip, old-cidr IP and port):\n%s", n, out)
	}
	for _, want := range []string{"default/dup-ip", "default/old-cidr", "provided IP is already allocated",
		"provided port is already allocated", "not in the valid range"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	// After a restore the bootstrap's request for 10.43.0.1 is refused,
	// new services avoid restored addresses, and deleting frees them.
	checkErr(t, s.BeforeCreate(context.Background(), service("kubernetes", withClusterIP("10.43.0.1"))),
		"spec.clusterIPs: failed to allocate IP 10.43.0.1: provided IP is already allocated")
	s.AfterDelete(context.Background(), &stored[1])
	if s.IPs().Has(netip.MustParseAddr("10.43.0.10")) || s.NodePorts().Has(30080) {
		t.Errorf("delete of a restored service did not release it")
	}
}

func TestAttach(t *testing.T) {
	ctx := context.Background()
	s := newServices(t, "fd00:43::/112", DefaultNodePortRange)
	r := &registry.Resource{Name: "services"}
	s.Attach(r)
	svc := service("web", withType(corev1.ServiceTypeNodePort))
	finish, err := r.BeginCreate(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	finish(ctx, true)
	ip := netip.MustParseAddr(svc.Spec.ClusterIP)
	if !ip.Is6() || !s.IPs().Has(ip) || svc.Spec.IPFamilies[0] != corev1.IPv6Protocol {
		t.Fatalf("IPv6 cluster IP %s families %v", ip, svc.Spec.IPFamilies)
	}
	updated := edit(svc, withType(corev1.ServiceTypeClusterIP))
	finish, err = r.BeginUpdate(ctx, updated, svc)
	if err != nil {
		t.Fatal(err)
	}
	finish(ctx, true)
	r.AfterDelete(ctx, updated)
	if s.IPs().Free() != s.IPs().Size() || s.NodePorts().Free() != 2768 {
		t.Fatalf("not everything released")
	}
	if _, err := r.BeginCreate(ctx, &corev1.Pod{}); err == nil || apierrors.IsInvalid(err) {
		t.Fatalf("wrong type: %v", err)
	}
	r.AfterDelete(ctx, &corev1.Pod{}) // ignored
}

// TestConcurrentAllocations creates, updates and deletes Services from
// many goroutines (run with -race) and checks that no address or port is
// handed out twice and the free counts add up.
func TestConcurrentAllocations(t *testing.T) {
	ctx := context.Background()
	s := newServices(t, "10.43.0.0/22", DefaultNodePortRange)
	const workers, perWorker = 8, 60
	var (
		mu   sync.Mutex
		live []*corev1.Service
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				svc := service(fmt.Sprintf("w%d-%d", w, i), withType(corev1.ServiceTypeNodePort), withPorts(
					port("a", corev1.ProtocolTCP, 80, 0), port("b", corev1.ProtocolTCP, 81, 0)))
				if err := s.BeforeCreate(ctx, svc); err != nil {
					errs <- err
					return
				}
				switch i % 3 {
				case 0: // deleted again
					s.AfterDelete(ctx, svc)
					continue
				case 1: // round trip through ClusterIP
					c := edit(svc, withType(corev1.ServiceTypeClusterIP))
					if err := s.BeforeUpdate(ctx, c, svc); err != nil {
						errs <- err
						return
					}
					n := edit(c, withType(corev1.ServiceTypeNodePort))
					if err := s.BeforeUpdate(ctx, n, c); err != nil {
						errs <- err
						return
					}
					svc = n
				}
				mu.Lock()
				live = append(live, svc)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ips, ports := map[string]string{}, map[int32]string{}
	for _, svc := range live {
		if prev, dup := ips[svc.Spec.ClusterIP]; dup {
			t.Fatalf("%s given to %s and %s", svc.Spec.ClusterIP, prev, svc.Name)
		}
		ips[svc.Spec.ClusterIP] = svc.Name
		for _, np := range nodePortsOf(svc) {
			if prev, dup := ports[np]; dup || np == 0 {
				t.Fatalf("node port %d given to %s and %s", np, prev, svc.Name)
			}
			ports[np] = svc.Name
		}
	}
	if got, want := s.IPs().Free(), s.IPs().Size()-len(live); got != want {
		t.Errorf("free IPs %d, want %d", got, want)
	}
	if got, want := s.NodePorts().Free(), 2768-2*len(live); got != want {
		t.Errorf("free node ports %d, want %d", got, want)
	}
}

func TestDropTypeDependentFields(t *testing.T) {
	nodePort := service("web", withType(corev1.ServiceTypeNodePort), withClusterIP("10.43.0.5"), withNodePorts(30080),
		func(s *corev1.Service) {
			s.Spec.ClusterIPs = []string{"10.43.0.5"}
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
			s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		})
	lb := edit(nodePort, localLB, func(s *corev1.Service) {
		s.Spec.HealthCheckNodePort = 31000
		s.Spec.AllocateLoadBalancerNodePorts = ptr.To(true)
	})
	tests := []struct {
		name string
		old  *corev1.Service
		edit func(*corev1.Service)
		want func(*corev1.Service) // applied to the edited copy
	}{{
		name: "NodePort to ClusterIP drops unchanged node ports",
		old:  nodePort,
		edit: withType(corev1.ServiceTypeClusterIP),
		want: withNodePorts(0),
	}, {
		name: "NodePort to ClusterIP keeps a new node port for validation to refuse",
		old:  nodePort,
		edit: func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP; s.Spec.Ports[0].NodePort = 30081 },
	}, {
		name: "to ExternalName drops cluster IPs, families and policy",
		old:  nodePort,
		edit: withType(corev1.ServiceTypeExternalName),
		want: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = "", nil, nil, nil
			s.Spec.Ports[0].NodePort = 0
		},
	}, {
		name: "LoadBalancer to NodePort drops the health check port and allocateLoadBalancerNodePorts",
		old:  lb,
		edit: withType(corev1.ServiceTypeNodePort),
		want: func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 0; s.Spec.AllocateLoadBalancerNodePorts = nil },
	}, {
		name: "same type changes nothing",
		old:  lb,
		edit: func(*corev1.Service) {},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := edit(tt.old, tt.edit)
			want := got.DeepCopy()
			if tt.want != nil {
				tt.want(want)
			}
			DropTypeDependentFields(got, tt.old)
			if !apiequality.Semantic.DeepEqual(got, want) {
				t.Errorf("got spec\n%+v\nwant\n%+v", got.Spec, want.Spec)
			}
		})
	}
}
