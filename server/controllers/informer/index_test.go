package informer_test

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

func ownedPod(ns, name string, owner types.UID, controller bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: owner, Controller: ptr.To(controller)}}
	}
	return p
}

func names(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	slices.Sort(out)
	return out
}

// TestControllerIndex checks the controller index through adds, updates
// that move an object between owners (adoption, release), deletes, and an
// index added after the cache is filled.
func TestControllerIndex(t *testing.T) {
	api := fakeapi.New()
	ctx := context.Background()
	for _, p := range []*corev1.Pod{
		ownedPod("a", "mine-1", "rs-1", true),
		ownedPod("a", "mine-2", "rs-1", true),
		ownedPod("a", "other", "rs-2", true),
		ownedPod("a", "orphan", "", false),
		ownedPod("a", "not-controller", "rs-1", false), // an owner, not the controller: an orphan
		ownedPod("b", "orphan", "", false),
		ownedPod("b", "stray", "rs-1", true), // names rs-1's UID from another namespace
	} {
		api.MustCreate(fakeapi.Pods, p)
	}
	inf := informer.New(api, fakeapi.Pods, informer.Options{Logger: quiet})
	run(t, inf)
	inf.AddIndex(informer.ControllerIndex, informer.ByController) // filled from the cache
	// A second index of the same name keeps the first (controllers
	// sharing the informer each add the one they need).
	inf.AddIndex(informer.ControllerIndex, func(runtime.Object) []string { return []string{"x"} })
	pods := informer.NewLister[*corev1.Pod](inf)

	check := func(what string, got []*corev1.Pod, want ...string) {
		t.Helper()
		if g := names(got); !slices.Equal(g, want) {
			t.Errorf("%s = %v, want %v", what, g, want)
		}
	}
	check("Controlled(a, rs-1)", pods.Controlled("a", "rs-1"), "a/mine-1", "a/mine-2", "a/not-controller", "a/orphan")
	// b/stray is filed under rs-1 but is not in rs-1's namespace.
	check("Controlled(c, rs-1)", pods.Controlled("c", "rs-1"))
	check("ByIndex(rs-2)", pods.ByIndex(informer.ControllerIndex, "rs-2"), "a/other")
	check("ByIndex(unknown index)", pods.ByIndex("nope", "rs-1"))
	check("ByIndex(x) of the second AddIndex", pods.ByIndex(informer.ControllerIndex, "x"))

	// Adopt the orphan, release mine-2, delete other.
	update := func(ns, name string, owner types.UID) {
		t.Helper()
		if _, err := api.Update(ctx, fakeapi.Pods, ownedPod(ns, name, owner, true), "", "test"); err != nil {
			t.Fatal(err)
		}
	}
	update("a", "orphan", "rs-1")
	update("a", "mine-2", "")
	if _, err := api.Delete(ctx, fakeapi.Pods, "a", "other", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, "index follows the changes", func() bool {
		return len(pods.ByIndex(informer.ControllerIndex, "rs-2")) == 0
	})
	check("Controlled(a, rs-1) after the changes", pods.Controlled("a", "rs-1"), "a/mine-1", "a/mine-2", "a/not-controller", "a/orphan")
	check("ByIndex(rs-1) after the changes", pods.ByIndex(informer.ControllerIndex, "rs-1"), "a/mine-1", "a/orphan", "b/stray")
	check("orphans of a after the changes", pods.ByIndex(informer.ControllerIndex, informer.OrphanIndexValue("a")), "a/mine-2", "a/not-controller")

	// An update that keeps the owner hands out the new object.
	relabeled := ownedPod("a", "mine-1", "rs-1", true)
	relabeled.Labels = map[string]string{"v": "2"}
	if _, err := api.Update(ctx, fakeapi.Pods, relabeled, "", "test"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 10*time.Second, "the index holds the updated object", func() bool {
		for _, p := range pods.ByIndex(informer.ControllerIndex, "rs-1") {
			if p.Name == "mine-1" {
				return p.Labels["v"] == "2"
			}
		}
		return false
	})
}
