package endpoints

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newAPI() *fakeapi.API {
	core := schema.GroupVersion{Version: "v1"}
	return fakeapi.New(append(fakeapi.Resources(),
		&registry.Resource{
			GroupVersion: core, Name: "services", Kind: "Service", Namespaced: true,
			New: func() runtime.Object { return &corev1.Service{} }, NewList: func() runtime.Object { return &corev1.ServiceList{} },
		},
		&registry.Resource{
			GroupVersion: core, Name: "endpoints", Kind: "Endpoints", Namespaced: true,
			New: func() runtime.Object { return &corev1.Endpoints{} }, NewList: func() runtime.Object { return &corev1.EndpointsList{} },
		},
	)...)
}

func start(t *testing.T, api *fakeapi.API) {
	t.Helper()
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, nil, Options{Logger: quiet, BatchPeriod: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = factory.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func getEndpoints(api *fakeapi.API, name string) *corev1.Endpoints {
	obj, err := api.Get(context.Background(), endpointsGVR, "ns", name)
	if err != nil {
		return nil
	}
	return obj.(*corev1.Endpoints)
}

// addressCounts counts ready and not-ready addresses of ns/name.
func addressCounts(api *fakeapi.API, name string) (ready, notReady int, ok bool) {
	ep := getEndpoints(api, name)
	if ep == nil {
		return 0, 0, false
	}
	for _, s := range ep.Subsets {
		ready += len(s.Addresses)
		notReady += len(s.NotReadyAddresses)
	}
	return ready, notReady, true
}

func hasCounts(api *fakeapi.API, name string, ready, notReady int) func() bool {
	return func() bool {
		r, n, ok := addressCounts(api, name)
		return ok && r == ready && n == notReady
	}
}

func updates(api *fakeapi.API) int {
	n := 0
	for _, a := range api.Actions() {
		if a.Resource == "endpoints" && a.Verb != "delete" {
			n++
		}
	}
	return n
}

func TestEndpointsFollowPods(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Pods, testPod("a", "10.42.0.1", ready))
	start(t, api)
	api.MustCreate(servicesGVR, testService())
	controllertest.Eventually(t, 5*time.Second, "endpoints with one ready address", hasCounts(api, "web", 1, 0))

	ep := getEndpoints(api, "web")
	if ep.Labels[LabelManagedBy] != ControllerName || ep.Labels["tier"] != "front" {
		t.Errorf("labels = %v, want the service's and %s", ep.Labels, LabelManagedBy)
	}
	if _, ok := ep.Labels[corev1.IsHeadlessService]; ok {
		t.Errorf("service with a cluster IP labelled headless")
	}

	// A new pod, not ready yet.
	api.MustCreate(fakeapi.Pods, testPod("b", "10.42.0.2"))
	controllertest.Eventually(t, 5*time.Second, "a not-ready address", hasCounts(api, "web", 1, 1))

	// It becomes ready.
	obj, _ := api.Get(context.Background(), fakeapi.Pods, "ns", "b")
	pod := obj.(*corev1.Pod)
	ready(pod)
	if _, err := api.Update(context.Background(), fakeapi.Pods, pod, "status", "test"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "two ready addresses", hasCounts(api, "web", 2, 0))

	// A pod whose labels no longer match leaves.
	obj, _ = api.Get(context.Background(), fakeapi.Pods, "ns", "a")
	pod = obj.(*corev1.Pod)
	pod.Labels = map[string]string{"app": "other"}
	if _, err := api.Update(context.Background(), fakeapi.Pods, pod, "", "test"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "relabelled pod removed", hasCounts(api, "web", 1, 0))

	// A deleted pod leaves.
	if _, err := api.Delete(context.Background(), fakeapi.Pods, "ns", "b", &metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "empty endpoints", hasCounts(api, "web", 0, 0))
}

func TestUnchangedEndpointsAreNotRewritten(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Pods, testPod("a", "10.42.0.1", ready))
	api.MustCreate(servicesGVR, testService())
	start(t, api)
	controllertest.Eventually(t, 5*time.Second, "endpoints", hasCounts(api, "web", 1, 0))
	before := updates(api)

	// Irrelevant pod change: an annotation.
	obj, _ := api.Get(context.Background(), fakeapi.Pods, "ns", "a")
	pod := obj.(*corev1.Pod)
	pod.Annotations = map[string]string{"x": "y"}
	if _, err := api.Update(context.Background(), fakeapi.Pods, pod, "", "test"); err != nil {
		t.Fatal(err)
	}
	// A service change that does not change the endpoints.
	obj, _ = api.Get(context.Background(), servicesGVR, "ns", "web")
	svc := obj.(*corev1.Service)
	svc.Annotations = map[string]string{"x": "y"}
	if _, err := api.Update(context.Background(), servicesGVR, svc, "", "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if after := updates(api); after != before {
		t.Errorf("%d endpoints writes for changes that do not matter", after-before)
	}
}

func TestServiceWithoutSelectorIsLeftAlone(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Pods, testPod("a", "10.42.0.1", ready))
	api.MustCreate(servicesGVR, testService(func(s *corev1.Service) { s.Name = "manual"; s.Spec.Selector = nil }))
	api.MustCreate(endpointsGVR, &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "manual"},
		Subsets:    []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.1"}}}},
	})
	api.MustCreate(servicesGVR, testService(func(s *corev1.Service) { s.Name = "ext"; s.Spec.Type = corev1.ServiceTypeExternalName }))
	start(t, api)
	api.MustCreate(servicesGVR, testService())
	controllertest.Eventually(t, 5*time.Second, "endpoints of the selecting service", hasCounts(api, "web", 1, 0))

	if ep := getEndpoints(api, "manual"); ep == nil || ep.Subsets[0].Addresses[0].IP != "192.0.2.1" || ep.Labels[LabelManagedBy] != "" {
		t.Errorf("user's endpoints changed: %+v", ep)
	}
	if getEndpoints(api, "ext") != nil {
		t.Error("endpoints created for an ExternalName service")
	}

	// Deleting the selector-less service leaves the user's endpoints.
	if _, err := api.Delete(context.Background(), servicesGVR, "ns", "manual", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if getEndpoints(api, "manual") == nil {
		t.Error("endpoints not managed by the controller were deleted")
	}
}

func TestEndpointsOfDeletedServiceAreDeleted(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Pods, testPod("a", "10.42.0.1", ready))
	api.MustCreate(servicesGVR, testService())
	// Leftover of a service deleted while the controller was down.
	api.MustCreate(endpointsGVR, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "old", Labels: map[string]string{LabelManagedBy: ControllerName}}})
	start(t, api)
	controllertest.Eventually(t, 5*time.Second, "leftover deleted", func() bool { return getEndpoints(api, "old") == nil })
	controllertest.Eventually(t, 5*time.Second, "endpoints", hasCounts(api, "web", 1, 0))

	if _, err := api.Delete(context.Background(), servicesGVR, "ns", "web", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "endpoints deleted with their service", func() bool { return getEndpoints(api, "web") == nil })
}

func TestDeletedEndpointsAreRecreated(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Pods, testPod("a", "10.42.0.1", ready))
	api.MustCreate(servicesGVR, testService(func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }))
	start(t, api)
	controllertest.Eventually(t, 5*time.Second, "endpoints", hasCounts(api, "web", 1, 0))
	if _, ok := getEndpoints(api, "web").Labels[corev1.IsHeadlessService]; !ok {
		t.Error("headless service's endpoints lack the headless label")
	}
	first := getEndpoints(api, "web").UID
	if _, err := api.Delete(context.Background(), endpointsGVR, "ns", "web", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "endpoints recreated", func() bool {
		ep := getEndpoints(api, "web")
		return ep != nil && ep.UID != first && len(ep.Subsets) == 1
	})
}
