package ingressstatus

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/ingressclass"
	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/servicelb"
	"github.com/orch-dev/orch/server/registry"
)

const wait = 20 * time.Second

// newAPI serves the fake's kinds plus the real registry's Ingresses (with
// their status subresource) and IngressClasses.
func newAPI(t *testing.T) *fakeapi.API {
	t.Helper()
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	return fakeapi.New(append(fakeapi.Resources(),
		table.Lookup(networkingv1.SchemeGroupVersion, "ingresses"),
		table.Lookup(networkingv1.SchemeGroupVersion, "ingressclasses"))...)
}

func start(t *testing.T, api *fakeapi.API) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = factory.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// node makes a Node with the given addresses ("InternalIP=1.2.3.4").
func node(name string, isReady bool, addrs ...corev1.NodeAddress) *corev1.Node {
	status := corev1.ConditionFalse
	if isReady {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Addresses: addrs,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}},
	}
}

func internal(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}
func external(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip}
}

func ingress(name string, class *string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name},
		Spec: networkingv1.IngressSpec{IngressClassName: class, DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
	}
}

func class(name, controller string) *networkingv1.IngressClass {
	return &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
}

func addresses(t *testing.T, api *fakeapi.API, name string) []string {
	t.Helper()
	obj, err := api.Get(context.Background(), ingressesGVR, "web", name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range obj.(*networkingv1.Ingress).Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

func TestStatusFromNodes(t *testing.T) {
	api := newAPI(t)
	orch, nginx := "orch", "nginx"
	api.MustCreate(ingressClassesGVR, class("orch", ingressclass.ControllerName))
	api.MustCreate(ingressClassesGVR, class("nginx", "k8s.io/ingress-nginx"))
	api.MustCreate(fakeapi.Nodes, node("b", true, internal("198.18.0.2")))
	api.MustCreate(fakeapi.Nodes, node("a", true, internal("198.18.0.1"), external("203.0.113.1")))
	api.MustCreate(fakeapi.Nodes, node("down", false, internal("198.18.0.3")))
	excluded := node("excluded", true, internal("198.18.0.4"))
	excluded.Labels = map[string]string{servicelb.LabelExcludeFromLB: ""}
	api.MustCreate(fakeapi.Nodes, excluded)
	api.MustCreate(ingressesGVR, ingress("ours", &orch))
	api.MustCreate(ingressesGVR, ingress("classless", nil))
	api.MustCreate(ingressesGVR, ingress("theirs", &nginx))
	start(t, api)

	want := []string{"198.18.0.2", "203.0.113.1"} // a's external address, sorted
	for _, name := range []string{"ours", "classless"} {
		controllertest.Eventually(t, wait, name+"'s status", func() bool { return slices.Equal(addresses(t, api, name), want) })
	}

	// A node becoming Ready adds its address; a node deleted removes it.
	api.MustCreate(fakeapi.Nodes, node("c", true, internal("198.18.0.5")))
	want = []string{"198.18.0.2", "198.18.0.5", "203.0.113.1"}
	controllertest.Eventually(t, wait, "the new node's address", func() bool { return slices.Equal(addresses(t, api, "ours"), want) })
	if _, err := api.Delete(context.Background(), fakeapi.Nodes, "", "b", nil); err != nil {
		t.Fatal(err)
	}
	want = []string{"198.18.0.5", "203.0.113.1"}
	controllertest.Eventually(t, wait, "the deleted node's address gone", func() bool { return slices.Equal(addresses(t, api, "ours"), want) })

	if got := addresses(t, api, "theirs"); len(got) != 0 {
		t.Errorf("another controller's Ingress got status %v", got)
	}
}
