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

// node makes a Node with the given addresses whose agent advertises a
// serving ingress proxy.
func node(name string, isReady bool, addrs ...corev1.NodeAddress) *corev1.Node {
	status := corev1.ConditionFalse
	if isReady {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{ingressclass.ProxyAnnotation: ingressclass.ProxyServing}},
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

// setServing makes node name advertise a serving ingress proxy, or not,
// as its agent does.
func setServing(t *testing.T, api *fakeapi.API, name string, serving bool) {
	t.Helper()
	obj, err := api.Get(context.Background(), fakeapi.Nodes, "", name)
	if err != nil {
		t.Fatal(err)
	}
	n := obj.(*corev1.Node).DeepCopy()
	if serving {
		metav1.SetMetaDataAnnotation(&n.ObjectMeta, ingressclass.ProxyAnnotation, ingressclass.ProxyServing)
	} else {
		delete(n.Annotations, ingressclass.ProxyAnnotation)
	}
	if _, err := api.Update(context.Background(), fakeapi.Nodes, n, "", "test"); err != nil {
		t.Fatal(err)
	}
}

// TestStatusFollowsProxyAdvertisement: only nodes whose agents advertise
// a serving ingress proxy are listed, and the status follows the
// advertisement as it comes and goes.
func TestStatusFollowsProxyAdvertisement(t *testing.T) {
	api := newAPI(t)
	orch := "orch"
	api.MustCreate(ingressClassesGVR, class("orch", ingressclass.ControllerName))
	api.MustCreate(fakeapi.Nodes, node("serving", true, internal("198.18.0.1")))
	disabled := node("disabled", true, internal("198.18.0.2")) // --disable ingress, or 80 and 443 taken
	disabled.Annotations = nil
	api.MustCreate(fakeapi.Nodes, disabled)
	wrongValue := node("wrong-value", true, internal("198.18.0.3"))
	wrongValue.Annotations[ingressclass.ProxyAnnotation] = "true"
	api.MustCreate(fakeapi.Nodes, wrongValue)
	api.MustCreate(fakeapi.Nodes, node("down", false, internal("198.18.0.4"))) // advertised by an agent gone silent
	api.MustCreate(ingressesGVR, ingress("ours", &orch))
	start(t, api)

	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{name: "only the advertising Ready node", change: func() {}, want: []string{"198.18.0.1"}},
		{name: "advertisement added", change: func() { setServing(t, api, "disabled", true) }, want: []string{"198.18.0.1", "198.18.0.2"}},
		{name: "advertisement removed", change: func() { setServing(t, api, "serving", false) }, want: []string{"198.18.0.2"}},
		{name: "the last one removed", change: func() { setServing(t, api, "disabled", false) }, want: nil},
		{name: "advertised again", change: func() { setServing(t, api, "serving", true) }, want: []string{"198.18.0.1"}},
	}
	for _, step := range steps {
		step.change()
		controllertest.Eventually(t, wait, step.name, func() bool { return slices.Equal(addresses(t, api, "ours"), step.want) })
	}
}
