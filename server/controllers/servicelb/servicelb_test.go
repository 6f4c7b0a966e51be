package servicelb

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.DiscardHandler)

// newAPI serves the fake's kinds plus Services (with a status subresource
// whose updates keep the spec, and spec updates that keep the status, as
// the real registry's) and EndpointSlices.
func newAPI() *fakeapi.API {
	services := &registry.Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "services", Kind: "Service", Namespaced: true,
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &corev1.Service{} }, NewList: func() runtime.Object { return &corev1.ServiceList{} },
		PrepareForUpdate:       fakeapi.KeepStatus,
		PrepareForStatusUpdate: fakeapi.KeepAllButStatus,
	}
	endpointSlices := &registry.Resource{
		GroupVersion: discoveryv1.SchemeGroupVersion, Name: "endpointslices", Kind: "EndpointSlice", Namespaced: true,
		New: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, NewList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
	}
	return fakeapi.New(append(fakeapi.Resources(), services, endpointSlices)...)
}

func start(t *testing.T, api *fakeapi.API, reserved ...ReservedPort) *controllertest.Recorder {
	t.Helper()
	rec := &controllertest.Recorder{}
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, rec, Options{Reserved: reserved, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = factory.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return rec
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	controllertest.Eventually(t, 10*time.Second, what, cond)
}

func node(name string, ready bool, addrs ...corev1.NodeAddress) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Addresses:  addrs,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func internal(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

func external(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip}
}

// lbService is a LoadBalancer Service (the fake stamps its creation time).
func lbService(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			ClusterIP:  "10.43.0.10",
			Ports:      ports,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
		},
	}
}

func tcp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: fmt.Sprint(port), Protocol: corev1.ProtocolTCP, Port: port}
}

func udp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: fmt.Sprintf("u%d", port), Protocol: corev1.ProtocolUDP, Port: port}
}

func getService(t *testing.T, api *fakeapi.API, name string) *corev1.Service {
	t.Helper()
	obj, err := api.Get(context.Background(), servicesGVR, "ns", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Service)
}

// ingress returns the ingress IPs of ns/name.
func ingress(t *testing.T, api *fakeapi.API, name string) []string {
	t.Helper()
	svc := getService(t, api, name)
	var out []string
	for _, i := range svc.Status.LoadBalancer.Ingress {
		if i.IPMode == nil || *i.IPMode != corev1.LoadBalancerIPModeVIP {
			t.Errorf("ingress %s of %s: ipMode %v, want VIP", i.IP, name, i.IPMode)
		}
		out = append(out, i.IP)
	}
	return out
}

func hasIngress(t *testing.T, api *fakeapi.API, name string, want ...string) func() bool {
	return func() bool { return slices.Equal(ingress(t, api, name), want) }
}

func update[T runtime.Object](t *testing.T, api *fakeapi.API, gvr schema.GroupVersionResource, ns, name, subresource string, change func(T)) {
	t.Helper()
	obj, err := api.Get(context.Background(), gvr, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	o := obj.DeepCopyObject().(T)
	change(o)
	if _, err := api.Update(context.Background(), gvr, o, subresource, "test"); err != nil {
		t.Fatal(err)
	}
}

func TestIngressIsReadyNodeAddresses(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*corev1.Node
		svc   func(*corev1.Service)
		want  []string
	}{
		{
			name: "internal addresses of ready nodes, sorted",
			nodes: []*corev1.Node{
				node("b", true, internal("198.18.0.20")),
				node("a", true, internal("198.18.0.3"), corev1.NodeAddress{Type: corev1.NodeHostName, Address: "a"}),
				node("down", false, internal("198.18.0.9")),
			},
			want: []string{"198.18.0.3", "198.18.0.20"},
		},
		{
			name: "an external address replaces the node's internal one",
			nodes: []*corev1.Node{
				node("a", true, internal("198.18.0.3"), external("198.19.5.5")),
				node("b", true, internal("198.18.0.20")),
			},
			want: []string{"198.18.0.20", "198.19.5.5"},
		},
		{
			name: "excluded nodes are left out",
			nodes: []*corev1.Node{
				node("a", true, internal("198.18.0.3")),
				func() *corev1.Node {
					n := node("b", true, internal("198.18.0.20"))
					n.Labels = map[string]string{LabelExcludeFromLB: ""}
					return n
				}(),
			},
			want: []string{"198.18.0.3"},
		},
		{
			name: "the service's IP families decide",
			nodes: []*corev1.Node{
				node("a", true, internal("198.18.0.3"), internal("fd00::3")),
			},
			svc: func(s *corev1.Service) {
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			},
			want: []string{"fd00::3", "198.18.0.3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newAPI()
			for _, n := range tc.nodes {
				api.MustCreate(fakeapi.Nodes, n)
			}
			svc := lbService("web", tcp(80))
			if tc.svc != nil {
				tc.svc(svc)
			}
			api.MustCreate(servicesGVR, svc)
			rec := start(t, api)
			eventually(t, fmt.Sprintf("ingress %v", tc.want), hasIngress(t, api, "web", tc.want...))
			eventually(t, "an UpdatedLoadBalancer event", func() bool {
				return rec.Count("Normal UpdatedLoadBalancer Updated LoadBalancer with new IPs: [] -> ") == 1
			})
		})
	}
}

func TestIngressFollowsNodes(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Nodes, node("a", true, internal("198.18.0.3")))
	api.MustCreate(servicesGVR, lbService("web", tcp(80)))
	rec := start(t, api)
	eventually(t, "the first node's address", hasIngress(t, api, "web", "198.18.0.3"))

	api.MustCreate(fakeapi.Nodes, node("b", true, internal("198.18.0.4")))
	eventually(t, "both nodes' addresses", hasIngress(t, api, "web", "198.18.0.3", "198.18.0.4"))

	// --node-external-ip on a restarted agent.
	update(t, api, fakeapi.Nodes, "", "b", "status", func(n *corev1.Node) {
		n.Status.Addresses = append(n.Status.Addresses, external("198.19.0.4"))
	})
	eventually(t, "b's external address", hasIngress(t, api, "web", "198.18.0.3", "198.19.0.4"))

	for _, n := range []string{"a", "b"} {
		update(t, api, fakeapi.Nodes, "", n, "status", func(n *corev1.Node) {
			n.Status.Conditions[0].Status = corev1.ConditionUnknown
		})
	}
	eventually(t, "no ingress without ready nodes", hasIngress(t, api, "web"))
	eventually(t, "a warning", func() bool {
		return rec.Count("Warning UnAvailableLoadBalancer There are no available nodes for LoadBalancer") == 1
	})
}

func TestPortAlreadyUsed(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Nodes, node("a", true, internal("198.18.0.3")))
	api.MustCreate(servicesGVR, lbService("first", tcp(80), tcp(443)))
	// Younger, on a port the first holds: Pending.
	api.MustCreate(servicesGVR, lbService("second", tcp(8080), tcp(443)))
	// Same number, other protocol: no conflict.
	api.MustCreate(servicesGVR, lbService("dns", udp(80)))
	rec := start(t, api)

	eventually(t, "the first service's ingress", hasIngress(t, api, "first", "198.18.0.3"))
	eventually(t, "the UDP service's ingress", hasIngress(t, api, "dns", "198.18.0.3"))
	eventually(t, "a warning naming the holder", func() bool {
		return rec.Count("Warning UnAvailableLoadBalancer port 443/TCP is already used by LoadBalancer service ns/first") == 1
	})
	if got := ingress(t, api, "second"); len(got) != 0 {
		t.Fatalf("second service got ingress %v, want none (its port is taken)", got)
	}

	// A node change resyncs every service: the warning is not repeated.
	api.MustCreate(fakeapi.Nodes, node("b", true, internal("198.18.0.4")))
	eventually(t, "the new node in the first service's ingress", hasIngress(t, api, "first", "198.18.0.3", "198.18.0.4"))
	if n := rec.Count("Warning UnAvailableLoadBalancer port 443/TCP"); n != 1 {
		t.Errorf("%d warnings for the second service, want one: %q", n, rec.Events())
	}

	// The holder leaves: the port is free.
	if _, err := api.Delete(context.Background(), servicesGVR, "ns", "first", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second service's ingress", hasIngress(t, api, "second", "198.18.0.3", "198.18.0.4"))

	// A third takes the second's port while it holds it.
	api.MustCreate(servicesGVR, lbService("third", tcp(8080)))
	eventually(t, "a warning for the third", func() bool {
		return rec.Count("Warning UnAvailableLoadBalancer port 8080/TCP is already used by LoadBalancer service ns/second") == 1
	})
	if got := ingress(t, api, "third"); len(got) != 0 {
		t.Errorf("third service got ingress %v, want none", got)
	}
}

func TestReservedPorts(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Nodes, node("a", true, internal("198.18.0.3")))
	api.MustCreate(servicesGVR, lbService("web", tcp(8080), tcp(443)))
	api.MustCreate(servicesGVR, lbService("dns", udp(443)))
	rec := start(t, api, ReservedPort{Port: 80, Protocol: corev1.ProtocolTCP, By: "the built-in ingress proxy"},
		ReservedPort{Port: 443, Protocol: corev1.ProtocolTCP, By: "the built-in ingress proxy"})
	eventually(t, "UDP 443 is free", hasIngress(t, api, "dns", "198.18.0.3"))
	eventually(t, "a warning", func() bool {
		return rec.Count("Warning UnAvailableLoadBalancer port 443/TCP is already used by the built-in ingress proxy") == 1
	})
	if got := ingress(t, api, "web"); len(got) != 0 {
		t.Errorf("web got ingress %v on a reserved port", got)
	}
}

func TestOnlyOwnLoadBalancers(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Nodes, node("a", true, internal("198.18.0.3")))
	other := lbService("metallb", tcp(80))
	other.Spec.LoadBalancerClass = ptr.To("metallb.io/metallb")
	api.MustCreate(servicesGVR, other)
	cluster := lbService("plain", tcp(80))
	cluster.Spec.Type = corev1.ServiceTypeClusterIP
	api.MustCreate(servicesGVR, cluster)
	// Created last, on the port another class's service has: no conflict.
	api.MustCreate(servicesGVR, lbService("web", tcp(80)))
	start(t, api)

	eventually(t, "the service's ingress", hasIngress(t, api, "web", "198.18.0.3"))
	for _, name := range []string{"metallb", "plain"} {
		if got := ingress(t, api, name); len(got) != 0 {
			t.Errorf("%s got ingress %v", name, got)
		}
	}
	for _, a := range api.Actions() {
		if a.Verb == "update" && a.Resource == "services" && a.Name != "web" {
			t.Errorf("wrote %s", a)
		}
	}
}

func TestTypeChangeClearsStatus(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Nodes, node("a", true, internal("198.18.0.3")))
	api.MustCreate(servicesGVR, lbService("web", tcp(80)))
	api.MustCreate(servicesGVR, lbService("waiting", tcp(80)))
	start(t, api)
	eventually(t, "ingress", hasIngress(t, api, "web", "198.18.0.3"))

	update(t, api, servicesGVR, "ns", "web", "", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
	eventually(t, "the ingress cleared", hasIngress(t, api, "web"))
	eventually(t, "the port free for the one waiting", hasIngress(t, api, "waiting", "198.18.0.3"))
	if _, err := api.Delete(context.Background(), servicesGVR, "ns", "waiting", nil); err != nil {
		t.Fatal(err)
	}

	update(t, api, servicesGVR, "ns", "web", "", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer })
	eventually(t, "ingress again", hasIngress(t, api, "web", "198.18.0.3"))
}

func TestLocalTrafficPolicyUsesNodesWithEndpoints(t *testing.T) {
	api := newAPI()
	for i, n := range []string{"a", "b", "c"} {
		api.MustCreate(fakeapi.Nodes, node(n, true, internal(fmt.Sprintf("198.18.0.%d", i+1))))
	}
	svc := lbService("web", tcp(80))
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	api.MustCreate(servicesGVR, svc)
	endpoint := func(ip, node string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	}
	api.MustCreate(slicesGVR, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{endpoint("10.42.1.5", "b", true), endpoint("10.42.2.5", "c", false)},
	})
	start(t, api)
	eventually(t, "only b, which runs a ready endpoint", hasIngress(t, api, "web", "198.18.0.2"))

	update(t, api, slicesGVR, "ns", "web-1", "", func(sl *discoveryv1.EndpointSlice) {
		sl.Endpoints[1].Conditions.Ready = ptr.To(true)
	})
	eventually(t, "c too once its endpoint is ready", hasIngress(t, api, "web", "198.18.0.2", "198.18.0.3"))
}

func TestPortHolderKeepsItWithinTheSameSecond(t *testing.T) {
	api := newAPI()
	second := time.Now().Truncate(time.Second)
	api.Now = func() time.Time { return second } // the API server's resolution
	api.MustCreate(fakeapi.Nodes, node("a", true, internal("198.18.0.3")))
	api.MustCreate(servicesGVR, lbService("zz-first", tcp(80)))
	rec := start(t, api)
	eventually(t, "the first service's ingress", hasIngress(t, api, "zz-first", "198.18.0.3"))

	// Same creation second, a name that sorts first: it must not take
	// the port away.
	api.MustCreate(servicesGVR, lbService("aa-second", tcp(80)))
	eventually(t, "a warning for the second", func() bool {
		return rec.Count("Warning UnAvailableLoadBalancer port 80/TCP is already used by LoadBalancer service ns/zz-first") == 1
	})
	if got := ingress(t, api, "zz-first"); !slices.Equal(got, []string{"198.18.0.3"}) {
		t.Errorf("first service's ingress %v after the second came", got)
	}
	if got := ingress(t, api, "aa-second"); len(got) != 0 {
		t.Errorf("second service got ingress %v", got)
	}
}
