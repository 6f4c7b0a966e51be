package admission

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/registry"
)

type fakeRanges []*corev1.LimitRange

func (f fakeRanges) List(ns string, _ labels.Selector) []*corev1.LimitRange {
	var out []*corev1.LimitRange
	for _, lr := range f {
		if lr.Namespace == ns {
			out = append(out, lr)
		}
	}
	return out
}

func limitRange(name string, items ...corev1.LimitRangeItem) *corev1.LimitRange {
	return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.LimitRangeSpec{Limits: items}}
}

func TestLimitRangerDefaults(t *testing.T) {
	ranges := fakeRanges{limitRange("defaults", corev1.LimitRangeItem{
		Type:           corev1.LimitTypeContainer,
		Default:        rl("cpu", "500m", "memory", "256Mi"),
		DefaultRequest: rl("cpu", "100m"),
	})}
	r := podsEntry()
	NewLimitRanger(ranges).Attach(r)
	p := pod("web",
		corev1.Container{Name: "app"},
		withResources("tuned", rl("cpu", "200m"), rl("cpu", "1", "memory", "1Gi")))
	p.Spec.InitContainers = []corev1.Container{{Name: "setup"}}
	if err := create(t, r, p, true); err != nil {
		t.Fatal(err)
	}
	app, tuned, setup := p.Spec.Containers[0].Resources, p.Spec.Containers[1].Resources, p.Spec.InitContainers[0].Resources
	for _, c := range []struct {
		name      string
		got, want corev1.ResourceList
	}{
		{"app requests", app.Requests, rl("cpu", "100m")},
		{"app limits", app.Limits, rl("cpu", "500m", "memory", "256Mi")},
		{"tuned requests", tuned.Requests, rl("cpu", "200m")},
		{"tuned limits", tuned.Limits, rl("cpu", "1", "memory", "1Gi")},
		{"setup limits", setup.Limits, rl("cpu", "500m", "memory", "256Mi")},
	} {
		if !equalLists(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	want := "LimitRanger plugin set: cpu request for init container setup; cpu, memory limit for init container setup; " +
		"cpu request for container app; cpu, memory limit for container app"
	if got := p.Annotations[LimitRangerAnnotation]; got != want {
		t.Errorf("annotation:\n got %q\nwant %q", got, want)
	}
}

func equalLists(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}

func TestLimitRangerConstraints(t *testing.T) {
	container := func(items ...corev1.LimitRangeItem) fakeRanges {
		for i := range items {
			items[i].Type = corev1.LimitTypeContainer
		}
		return fakeRanges{limitRange("limits", items...)}
	}
	tests := []struct {
		name   string
		ranges fakeRanges
		pod    *corev1.Pod
		want   string
	}{{
		name:   "within range",
		ranges: container(corev1.LimitRangeItem{Max: rl("memory", "1Gi"), Min: rl("memory", "10Mi")}),
		pod:    pod("web", withResources("app", rl("memory", "100Mi"), rl("memory", "1Gi"))),
	}, {
		name:   "limit above max",
		ranges: container(corev1.LimitRangeItem{Max: rl("memory", "1Gi")}),
		pod:    pod("web", withResources("app", nil, rl("memory", "2Gi"))),
		want:   `pods "web" is forbidden: Maximum memory usage per Container is 1Gi, but limit is 2Gi.`,
	}, {
		name:   "no limit under a max",
		ranges: container(corev1.LimitRangeItem{Max: rl("cpu", "1")}),
		pod:    pod("web"),
		want:   `pods "web" is forbidden: Maximum cpu usage per Container is 1.  No limit is specified.`,
	}, {
		name:   "default limit satisfies the max",
		ranges: container(corev1.LimitRangeItem{Max: rl("cpu", "1"), Default: rl("cpu", "1")}),
		pod:    pod("web"),
	}, {
		name:   "request below min",
		ranges: container(corev1.LimitRangeItem{Min: rl("cpu", "100m")}),
		pod:    pod("web", withResources("app", rl("cpu", "50m"), nil)),
		want:   `pods "web" is forbidden: Minimum cpu usage per Container is 100m, but request is 50m.`,
	}, {
		name:   "ratio",
		ranges: container(corev1.LimitRangeItem{MaxLimitRequestRatio: rl("cpu", "2")}),
		pod:    pod("web", withResources("app", rl("cpu", "100m"), rl("cpu", "500m"))),
		want:   `pods "web" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000.`,
	}, {
		name:   "several violations are aggregated",
		ranges: container(corev1.LimitRangeItem{Max: rl("cpu", "1", "memory", "1Gi")}),
		pod:    pod("web", withResources("app", nil, rl("cpu", "2", "memory", "2Gi"))),
		want: `pods "web" is forbidden: [Maximum cpu usage per Container is 1, but limit is 2., ` +
			`Maximum memory usage per Container is 1Gi, but limit is 2Gi.]`,
	}, {
		name:   "pod max counts all containers",
		ranges: fakeRanges{limitRange("pod", corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: rl("memory", "1Gi")})},
		pod: pod("web",
			withResources("a", nil, rl("memory", "600Mi")),
			withResources("b", nil, rl("memory", "600Mi"))),
		want: `pods "web" is forbidden: Maximum memory usage per Pod is 1Gi, but limit is 1200Mi.`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := podsEntry()
			NewLimitRanger(tt.ranges).Attach(r)
			err := create(t, r, tt.pod, true)
			if got := errString(err); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
			if err != nil && !apierrors.IsForbidden(err) {
				t.Errorf("not 403: %#v", err)
			}
		})
	}
}

func TestLimitRangerDefaultAboveRequestIsInvalid(t *testing.T) {
	ranges := fakeRanges{limitRange("defaults", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Default: rl("cpu", "200m")})}
	r := podsEntry()
	NewLimitRanger(ranges).Attach(r)
	err := create(t, r, pod("web", withResources("app", rl("cpu", "500m"), nil)), true)
	want := `Pod "web" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: "500m": must be less than or equal to cpu limit of 200m`
	if errString(err) != want || !apierrors.IsInvalid(err) {
		t.Fatalf("got %q, want %q (422)", errString(err), want)
	}
}

func TestLimitRangerClaims(t *testing.T) {
	ranges := fakeRanges{limitRange("storage", corev1.LimitRangeItem{
		Type: corev1.LimitTypePersistentVolumeClaim, Min: rl("storage", "1Gi"), Max: rl("storage", "10Gi"),
	})}
	r := &registry.Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "persistentvolumeclaims", Namespaced: true}
	NewLimitRanger(ranges).Attach(r)
	claim := func(size string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data", ResourceVersion: "1"},
			Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: rl("storage", size)}}}
	}
	for size, want := range map[string]string{
		"5Gi":   "",
		"500Mi": `persistentvolumeclaims "data" is forbidden: Minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi.`,
		"20Gi":  `persistentvolumeclaims "data" is forbidden: Maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi.`,
	} {
		if got := errString(create(t, r, claim(size), true)); got != want {
			t.Errorf("create %s: got %q, want %q", size, got, want)
		}
	}
	// Expanding a claim is checked too.
	_, err := r.BeginUpdate(t.Context(), claim("20Gi"), claim("5Gi"))
	if !apierrors.IsForbidden(err) {
		t.Errorf("expansion over max: %v", err)
	}
	// Other resources get no hook.
	cms := &registry.Resource{GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "configmaps", Namespaced: true}
	NewLimitRanger(ranges).Attach(cms)
	if cms.BeginCreate != nil {
		t.Error("LimitRanger attached to configmaps")
	}
}

// LimitRanger attached after Quota runs first, so quota charges and checks
// the defaulted pod.
func TestLimitRangerThenQuota(t *testing.T) {
	ranges := fakeRanges{limitRange("defaults", corev1.LimitRangeItem{
		Type: corev1.LimitTypeContainer, Default: rl("cpu", "500m"), DefaultRequest: rl("cpu", "250m"),
	})}
	quotas := fakeQuotas{resourceQuota("compute", rl("limits.cpu", "1", "requests.cpu", "1"), rl("limits.cpu", "0", "requests.cpu", "0"))}
	r := podsEntry()
	NewQuota(quotas, QuotaOptions{}).Attach(r)
	NewLimitRanger(ranges).Attach(r)
	for _, name := range []string{"a", "b"} {
		if err := create(t, r, pod(name), true); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	err := create(t, r, pod("c"), true)
	want := `pods "c" is forbidden: exceeded quota: compute, requested: limits.cpu=500m, used: limits.cpu=1, limited: limits.cpu=1`
	if errString(err) != want {
		t.Fatalf("got  %q\nwant %q", errString(err), want)
	}
}
