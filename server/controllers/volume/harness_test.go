package volume

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = testLogger()

func testLogger() *slog.Logger {
	if os.Getenv("VOLUME_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// storageResources is the fake's default table plus the registry's own
// entries for the storage kinds, so that updates go through orch's real
// update strategies.
func storageResources(t *testing.T) []*registry.Resource {
	t.Helper()
	table, err := registry.NewTable()
	if err != nil {
		t.Fatal(err)
	}
	out := fakeapi.Resources()
	for _, gvr := range []schema.GroupVersionResource{VolumesGVR, ClaimsGVR, StorageClassesGVR} {
		res := table.Lookup(gvr.GroupVersion(), gvr.Resource)
		if res == nil {
			t.Fatalf("registry serves no %s", gvr)
		}
		out = append(out, res)
	}
	return out
}

// validatingAPI runs the controller's writes through the registry's
// defaulting and validation, as orch's API server does, and fails the test
// on an invalid write.
type validatingAPI struct {
	*fakeapi.API
	t   *testing.T
	res map[schema.GroupVersionResource]*registry.Resource
}

func (v *validatingAPI) Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error) {
	if res := v.res[gvr]; res != nil {
		check := obj.DeepCopyObject()
		if res.Default != nil {
			res.Default(check)
		}
		if res.Validate != nil {
			if errs := res.Validate(check); len(errs) > 0 {
				v.t.Errorf("invalid create of %s: %v", gvr.Resource, errs.ToAggregate())
				return nil, errs.ToAggregate()
			}
		}
	}
	return v.API.Create(ctx, gvr, obj, fieldManager)
}

func (v *validatingAPI) Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error) {
	res := v.res[gvr]
	if res == nil || res.ValidateUpdate == nil {
		return v.API.Update(ctx, gvr, obj, subresource, fieldManager)
	}
	m := obj.(metav1.Object)
	old, err := v.API.Get(ctx, gvr, m.GetNamespace(), m.GetName())
	if err != nil {
		return nil, err
	}
	if rv := m.GetResourceVersion(); rv != "" && rv != old.(metav1.Object).GetResourceVersion() {
		// A stale write: the fake answers with a conflict, as the API
		// server does before validating.
		return v.API.Update(ctx, gvr, obj, subresource, fieldManager)
	}
	check := obj.DeepCopyObject()
	switch subresource {
	case "status":
		res.PrepareForStatusUpdate(check, old)
	case "":
		res.PrepareForUpdate(check, old)
	}
	if errs := res.ValidateUpdate(check, old); len(errs) > 0 {
		v.t.Errorf("invalid update of %s %s: %v", gvr.Resource, m.GetName(), errs.ToAggregate())
		return nil, errs.ToAggregate()
	}
	return v.API.Update(ctx, gvr, obj, subresource, fieldManager)
}

type harness struct {
	t    *testing.T
	ctx  context.Context
	api  *fakeapi.API
	rec  *controllertest.Recorder
	ctrl *Controller
}

// start runs the controller on a fake API holding objs until the test ends.
func start(t *testing.T, opts Options, objs ...runtime.Object) *harness {
	t.Helper()
	resources := storageResources(t)
	api := fakeapi.New(resources...)
	h := &harness{t: t, api: api, rec: &controllertest.Recorder{}}
	checked := &validatingAPI{API: api, t: t, res: map[schema.GroupVersionResource]*registry.Resource{}}
	for _, res := range resources {
		checked.res[res.GroupVersionResource()] = res
	}
	for _, obj := range objs {
		h.create(obj)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	factory := informer.NewFactory(api, quiet)
	opts.Logger = quiet
	c := New(checked, factory, h.rec, opts)
	h.ctrl = c
	var wg sync.WaitGroup
	wg.Go(func() { _ = factory.Run(ctx) })
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return h
}

func gvrOf(obj runtime.Object) schema.GroupVersionResource {
	switch obj.(type) {
	case *corev1.PersistentVolume:
		return VolumesGVR
	case *corev1.PersistentVolumeClaim:
		return ClaimsGVR
	case *storagev1.StorageClass:
		return StorageClassesGVR
	case *corev1.Pod:
		return fakeapi.Pods
	case *corev1.Node:
		return fakeapi.Nodes
	}
	panic(fmt.Sprintf("no resource for %T", obj))
}

func (h *harness) create(obj runtime.Object) runtime.Object {
	h.t.Helper()
	out, err := h.api.Create(context.Background(), gvrOf(obj), obj, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) claim(name string) (*corev1.PersistentVolumeClaim, bool) {
	obj, err := h.api.Get(h.ctx, ClaimsGVR, "default", name)
	if err != nil {
		return nil, false
	}
	return obj.(*corev1.PersistentVolumeClaim), true
}

func (h *harness) volume(name string) (*corev1.PersistentVolume, bool) {
	obj, err := h.api.Get(h.ctx, VolumesGVR, "", name)
	if err != nil {
		return nil, false
	}
	return obj.(*corev1.PersistentVolume), true
}

// update re-reads an object, mutates and writes it (retrying conflicts
// with the controller).
func (h *harness) update(obj runtime.Object, subresource string, mutate func(runtime.Object)) {
	h.t.Helper()
	gvr := gvrOf(obj)
	m := obj.(metav1.Object)
	for range 100 {
		cur, err := h.api.Get(h.ctx, gvr, m.GetNamespace(), m.GetName())
		if err != nil {
			h.t.Fatal(err)
		}
		mutate(cur)
		if _, err = h.api.Update(h.ctx, gvr, cur, subresource, "test"); err == nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
	h.t.Fatalf("update %s %s: kept conflicting", gvr.Resource, m.GetName())
}

func (h *harness) delete(obj runtime.Object) {
	h.t.Helper()
	m := obj.(metav1.Object)
	if _, err := h.api.Delete(h.ctx, gvrOf(obj), m.GetNamespace(), m.GetName(), nil); err != nil {
		h.t.Fatal(err)
	}
}

// eventually polls cond for up to 5 s.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	controllertest.Eventually(h.t, 5*time.Second, what, cond)
}

// never checks that cond stays false for a while.
func (h *harness) never(what string, cond func() bool) {
	h.t.Helper()
	controllertest.Never(h.t, 200*time.Millisecond, what, cond)
}

func (h *harness) claimPhase(name string, phase corev1.PersistentVolumeClaimPhase) func() bool {
	return func() bool {
		pvc, ok := h.claim(name)
		return ok && pvc.Status.Phase == phase
	}
}

// cachedAvailable reports whether the controller's own cache shows n
// Available volumes: it binds from that cache, which may lag the API.
func (h *harness) cachedAvailable(n int) func() bool {
	return func() bool {
		available := 0
		for _, pv := range h.ctrl.volumeLister.List("", nil) {
			if pv.Status.Phase == corev1.VolumeAvailable {
				available++
			}
		}
		return available == n
	}
}

func (h *harness) volumePhase(name string, phase corev1.PersistentVolumePhase) func() bool {
	return func() bool {
		pv, ok := h.volume(name)
		return ok && pv.Status.Phase == phase
	}
}

func (h *harness) volumeGone(name string) func() bool {
	return func() bool { _, ok := h.volume(name); return !ok }
}

func (h *harness) claimGone(name string) func() bool {
	return func() bool { _, ok := h.claim(name); return !ok }
}

// Object builders.

func quantity(s string) resource.Quantity { return resource.MustParse(s) }

func claim(name, class, size string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: modes,
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: quantity(size)}},
		},
	}
	if class != "-" {
		pvc.Spec.StorageClassName = &class
	}
	return pvc
}

func volume(name, class, size string, reclaim corev1.PersistentVolumeReclaimPolicy, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolume {
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: quantity(size)},
			AccessModes:                   modes,
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: reclaim,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/srv/" + name},
			},
		},
	}
}

func immediateClass(name string) *storagev1.StorageClass {
	mode := storagev1.VolumeBindingImmediate
	return &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: name},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: &mode,
	}
}

func node(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
}

func podUsing(name, nodeName string, claims ...string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}
	for i, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name:         fmt.Sprintf("v%d", i),
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}},
		})
	}
	return pod
}
