package endpointslice

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newAPI(withSlices bool) *fakeapi.API {
	resources := append(fakeapi.Resources(), &registry.Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "services", Kind: "Service", Namespaced: true,
		New: func() runtime.Object { return &corev1.Service{} }, NewList: func() runtime.Object { return &corev1.ServiceList{} },
	})
	if withSlices {
		resources = append(resources, &registry.Resource{
			GroupVersion: discoveryv1.SchemeGroupVersion, Name: "endpointslices", Kind: "EndpointSlice", Namespaced: true,
			New: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, NewList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		})
	}
	return fakeapi.New(resources...)
}

func start(t *testing.T, api *fakeapi.API, opts Options) *Controller {
	t.Helper()
	factory := informer.NewFactory(api, quiet)
	opts.Logger = quiet
	if opts.BatchPeriod == 0 {
		opts.BatchPeriod = time.Millisecond
	}
	c := New(api, factory, nil, opts)
	controllertest.Run(t, c.Run, factory.Run)
	return c
}

func service(opts ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: corev1.ServiceSpec{
			Selector:   map[string]string{"app": "web"},
			ClusterIP:  "10.43.0.10",
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func pod(name, ip string, port int32, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{
			Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
		}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func notReady(p *corev1.Pod) { p.Status.Conditions = nil }

func listSlices(t *testing.T, api *fakeapi.API) []*discoveryv1.EndpointSlice {
	t.Helper()
	objs, _, err := api.List(context.Background(), slicesGVR, "ns", metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

// endpointCount is the number of endpoints over all slices, and of slices.
func endpointCount(t *testing.T, api *fakeapi.API) (endpoints, slices int) {
	all := listSlices(t, api)
	for _, s := range all {
		endpoints += len(s.Endpoints)
	}
	return endpoints, len(all)
}

func hasCount(t *testing.T, api *fakeapi.API, endpoints, nSlices int) func() bool {
	return func() bool {
		e, s := endpointCount(t, api)
		return e == endpoints && s == nSlices
	}
}

func TestSlicesFollowPods(t *testing.T) {
	api := newAPI(true)
	api.MustCreate(fakeapi.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}}})
	api.MustCreate(fakeapi.Pods, pod("a", "10.42.0.1", 8080))
	start(t, api, Options{})
	svc := api.MustCreate(servicesGVR, service()).(*corev1.Service)
	controllertest.Eventually(t, 5*time.Second, "one slice with one endpoint", hasCount(t, api, 1, 1))

	s := listSlices(t, api)[0]
	if s.Labels[discoveryv1.LabelManagedBy] != ControllerName || s.Labels["tier"] != "front" || s.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("slice labels %v, address type %s", s.Labels, s.AddressType)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != svc.UID || !*s.OwnerReferences[0].Controller {
		t.Errorf("owner references = %v, want the service as controller", s.OwnerReferences)
	}
	if len(s.Ports) != 1 || *s.Ports[0].Port != 8080 || *s.Ports[0].Name != "http" {
		t.Errorf("ports = %+v", s.Ports)
	}
	ep := s.Endpoints[0]
	if ep.Addresses[0] != "10.42.0.1" || !*ep.Conditions.Ready || !*ep.Conditions.Serving || *ep.Conditions.Terminating ||
		*ep.NodeName != "node1" || ep.Zone == nil || *ep.Zone != "z1" || ep.TargetRef.Name != "a" {
		t.Errorf("endpoint = %+v", ep)
	}

	// A pod with another port for the named target port gets its own slice.
	api.MustCreate(fakeapi.Pods, pod("b", "10.42.0.2", 9090))
	controllertest.Eventually(t, 5*time.Second, "two slices", hasCount(t, api, 2, 2))

	// Terminating pods stay, not ready, terminating.
	if _, err := api.Delete(context.Background(), fakeapi.Pods, "ns", "a", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "terminating endpoint", func() bool {
		for _, s := range listSlices(t, api) {
			for _, ep := range s.Endpoints {
				if ep.TargetRef.Name == "a" {
					return *ep.Conditions.Terminating && !*ep.Conditions.Ready && *ep.Conditions.Serving
				}
			}
		}
		return false
	})
	// Finally gone: its slice with it.
	if _, err := api.Delete(context.Background(), fakeapi.Pods, "ns", "a", &metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "one slice left", hasCount(t, api, 1, 1))
}

func TestPlaceholderForServiceWithoutEndpoints(t *testing.T) {
	api := newAPI(true)
	start(t, api, Options{})
	api.MustCreate(servicesGVR, service())
	controllertest.Eventually(t, 5*time.Second, "placeholder slice", hasCount(t, api, 0, 1))

	api.MustCreate(fakeapi.Pods, pod("a", "10.42.0.1", 8080))
	controllertest.Eventually(t, 5*time.Second, "one endpoint in one slice", hasCount(t, api, 1, 1))
	if _, err := api.Delete(context.Background(), fakeapi.Pods, "ns", "a", &metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "placeholder again", hasCount(t, api, 0, 1))
}

func TestSlicesAreCapped(t *testing.T) {
	api := newAPI(true)
	for i := range 25 {
		api.MustCreate(fakeapi.Pods, pod(fmt.Sprintf("p%02d", i), fmt.Sprintf("10.42.0.%d", i+1), 8080))
	}
	api.MustCreate(servicesGVR, service())
	start(t, api, Options{MaxEndpointsPerSlice: 10})
	controllertest.Eventually(t, 5*time.Second, "25 endpoints in 3 slices", hasCount(t, api, 25, 3))
	for _, s := range listSlices(t, api) {
		if len(s.Endpoints) > 10 {
			t.Errorf("slice %s holds %d endpoints", s.Name, len(s.Endpoints))
		}
	}
}

func TestOnePodChangeRewritesOneSlice(t *testing.T) {
	api := newAPI(true)
	for i := range 20 {
		api.MustCreate(fakeapi.Pods, pod(fmt.Sprintf("p%02d", i), fmt.Sprintf("10.42.0.%d", i+1), 8080))
	}
	api.MustCreate(servicesGVR, service())
	start(t, api, Options{MaxEndpointsPerSlice: 10})
	controllertest.Eventually(t, 5*time.Second, "two full slices", hasCount(t, api, 20, 2))
	writes := func() int {
		n := 0
		for _, a := range api.Actions() {
			if a.Resource == "endpointslices.discovery.k8s.io" {
				n++
			}
		}
		return n
	}
	before := writes()

	obj, _ := api.Get(context.Background(), fakeapi.Pods, "ns", "p03")
	p := obj.(*corev1.Pod)
	notReady(p)
	if _, err := api.Update(context.Background(), fakeapi.Pods, p, "status", "test"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "endpoint not ready", func() bool {
		for _, s := range listSlices(t, api) {
			for _, ep := range s.Endpoints {
				if ep.TargetRef.Name == "p03" {
					return !*ep.Conditions.Ready
				}
			}
		}
		return false
	})
	time.Sleep(50 * time.Millisecond)
	if got := writes() - before; got != 1 {
		t.Errorf("%d slice writes for one pod change, want 1: %v", got, api.Actions()[before:])
	}
}

func TestServicesWithoutSelectorAndStaleSlices(t *testing.T) {
	api := newAPI(true)
	api.MustCreate(fakeapi.Pods, pod("a", "10.42.0.1", 8080))
	api.MustCreate(servicesGVR, service(func(s *corev1.Service) { s.Name = "manual"; s.Spec.Selector = nil }))
	// A slice left by an older service object of the same name.
	api.MustCreate(slicesGVR, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-old", Labels: map[string]string{
			discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: ControllerName,
		}, OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "web", UID: types.UID("old"), Controller: new(true)}}},
		AddressType: discoveryv1.AddressTypeIPv4,
	})
	api.MustCreate(servicesGVR, service())
	start(t, api, Options{})
	controllertest.Eventually(t, 5*time.Second, "stale slice replaced", func() bool {
		all := listSlices(t, api)
		return len(all) == 1 && all[0].Name != "web-old" && len(all[0].Endpoints) == 1
	})
	objs, _, _ := api.List(context.Background(), slicesGVR, "ns", metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=manual"})
	if len(objs) != 0 {
		t.Errorf("slices made for a service without selector: %d", len(objs))
	}
}

func TestDualStack(t *testing.T) {
	api := newAPI(true)
	api.MustCreate(fakeapi.Pods, pod("a", "10.42.0.1", 8080, func(p *corev1.Pod) {
		p.Status.PodIPs = []corev1.PodIP{{IP: "10.42.0.1"}, {IP: "fd00::1"}}
	}))
	api.MustCreate(servicesGVR, service(func(s *corev1.Service) {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}))
	start(t, api, Options{})
	controllertest.Eventually(t, 5*time.Second, "a slice per family", hasCount(t, api, 2, 2))
	var types []discoveryv1.AddressType
	for _, s := range listSlices(t, api) {
		types = append(types, s.AddressType)
	}
	slices.Sort(types)
	if !slices.Equal(types, []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}) {
		t.Errorf("address types = %v", types)
	}
}

func TestIdleWhenSlicesAreNotServed(t *testing.T) {
	api := newAPI(false)
	api.MustCreate(servicesGVR, service())
	c := start(t, api, Options{})
	if c.served || len(c.informers) != 0 {
		t.Fatal("controller started without the endpointslices resource")
	}
	time.Sleep(20 * time.Millisecond)
	if n := api.Watchers(); n != 0 {
		t.Errorf("%d watches opened by an idle controller", n)
	}
}

func TestPublishNotReadyAndHostname(t *testing.T) {
	svc := service(func(s *corev1.Service) {
		s.Spec.ClusterIP = corev1.ClusterIPNone
		s.Spec.PublishNotReadyAddresses = true
	})
	c := &Controller{opts: Options{MaxEndpointsPerSlice: 100}}
	c.nodes = informer.NewLister[*corev1.Node](informer.New(nil, nodesGVR, informer.Options{Logger: quiet}))
	p := pod("a", "10.42.0.1", 8080, notReady, func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "a", "web" })
	ep := c.endpoint(svc, p, "10.42.0.1")
	if !*ep.Conditions.Ready || *ep.Conditions.Serving || ep.Hostname == nil || *ep.Hostname != "a" {
		t.Errorf("endpoint = %+v, want ready (published), not serving, hostname a", ep)
	}
	if got := sliceLabels(svc); got[corev1.IsHeadlessService] != "" || len(got) != 4 {
		t.Errorf("labels = %v", got)
	}
}
