package admission_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/admission"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/resourcequota"
	"github.com/orch-dev/orch/server/ipalloc"
	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store/bolt"
)

var (
	podsGVR        = corev1.SchemeGroupVersion.WithResource("pods")
	servicesGVR    = corev1.SchemeGroupVersion.WithResource("services")
	namespacesGVR  = corev1.SchemeGroupVersion.WithResource("namespaces")
	limitRangesGVR = corev1.SchemeGroupVersion.WithResource("limitranges")
)

// TestWiredIntoTheAPIServer wires admission and the quota controller as
// orch server does and drives them through the in-process API on a real
// store: the creates go through defaulting, validation and the hooks.
func TestWiredIntoTheAPIServer(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	api, err := apiserver.New(apiserver.Config{Store: st, Table: table, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	local := api.Local()

	// As server.go: service allocators first, then quota, then LimitRanger
	// (which therefore runs first).
	ports, _ := ipalloc.ParsePortRange(ipalloc.DefaultNodePortRange)
	alloc, err := ipalloc.NewServices(netip.MustParsePrefix("10.43.0.0/16"), ports)
	if err != nil {
		t.Fatal(err)
	}
	alloc.Attach(table.Lookup(corev1.SchemeGroupVersion, "services"))
	factory := informer.NewFactory(local, quiet)
	quotas := admission.NewQuota(informer.NewLister[*corev1.ResourceQuota](factory.For(resourcequota.QuotasGVR)), admission.QuotaOptions{})
	ranges := admission.NewLimitRanger(informer.NewLister[*corev1.LimitRange](factory.For(limitRangesGVR)))
	for _, res := range table.Resources() {
		quotas.Attach(res)
		ranges.Attach(res)
	}
	controller := resourcequota.New(local, factory, resourcequota.Options{Usage: quotas, Logger: quiet})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { _ = api.Run(ctx) })
	<-api.Ready()
	wg.Go(func() { _ = factory.Run(ctx) })
	wg.Go(func() { _ = controller.Run(ctx) })

	if _, err := local.Create(ctx, namespacesGVR, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(ctx, limitRangesGVR, &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "defaults"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:           corev1.LimitTypeContainer,
			Default:        corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
			DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			Max:            corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
		}}},
	}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(ctx, resourcequota.QuotasGVR, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "compute-resources"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourcePods: resource.MustParse("2"), corev1.ResourceLimitsCPU: resource.MustParse("10"),
			corev1.ResourceServices: resource.MustParse("1"),
		}},
	}, "test"); err != nil {
		t.Fatal(err)
	}
	// Admission enforces the quota once the controller has computed it.
	waitFor(t, func() bool {
		obj, err := local.Get(ctx, resourcequota.QuotasGVR, "team", "compute-resources")
		return err == nil && len(obj.(*corev1.ResourceQuota).Status.Used) == 3
	})

	pod := func(name string, limits corev1.ResourceList) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox",
				Resources: corev1.ResourceRequirements{Limits: limits}}}}}
	}
	// LimitRanger: a limit over the max is refused.
	_, err = local.Create(ctx, podsGVR, pod("big", corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}), "test")
	if want := `pods "big" is forbidden: Maximum memory usage per Container is 1Gi, but limit is 2Gi.`; errString(err) != want {
		t.Fatalf("big: got %q, want %q", errString(err), want)
	}
	// Defaults make the pods satisfy "must specify limits.cpu".
	for _, name := range []string{"a", "b"} {
		obj, err := local.Create(ctx, podsGVR, pod(name, nil), "test")
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		got := obj.(*corev1.Pod).Spec.Containers[0].Resources
		if q := got.Limits[corev1.ResourceCPU]; q.String() != "500m" {
			t.Errorf("%s: default limit not applied: %v", name, got)
		}
	}
	_, err = local.Create(ctx, podsGVR, pod("c", nil), "test")
	want := `pods "c" is forbidden: exceeded quota: compute-resources, requested: pods=1, used: pods=2, limited: pods=2`
	if errString(err) != want || !apierrors.IsForbidden(err) {
		t.Fatalf("c: got %q, want %q", errString(err), want)
	}

	// Services: the quota runs before the IP allocator.
	svc := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	if _, err := local.Create(ctx, servicesGVR, svc("one"), "test"); err != nil {
		t.Fatal(err)
	}
	_, err = local.Create(ctx, servicesGVR, svc("two"), "test")
	if want := `services "two" is forbidden: exceeded quota: compute-resources, requested: services=1, used: services=1, limited: services=1`; errString(err) != want {
		t.Fatalf("two: got %q, want %q", errString(err), want)
	}

	// Deleting a pod frees its share once the controller recalculates.
	if _, err := local.Delete(ctx, podsGVR, "team", "a", &metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := local.Create(ctx, podsGVR, pod("c", nil), "test")
		return err == nil
	})
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last status.used: %s", last)
		}
	}()
	waitFor(t, func() bool {
		obj, err := local.Get(ctx, resourcequota.QuotasGVR, "team", "compute-resources")
		if err != nil {
			return false
		}
		used := obj.(*corev1.ResourceQuota).Status.Used
		last = fmt.Sprint(used)
		return used.Pods().String() == "2" && used.Name(corev1.ResourceLimitsCPU, resource.DecimalSI).String() == "1"
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
