package apiserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func clients(t *testing.T, ts *testServer, contentType string) (*kubernetes.Clientset, *dynamic.DynamicClient) {
	t.Helper()
	cfg := &rest.Config{Host: ts.URL, QPS: 1000, Burst: 1000}
	cfg.ContentType = contentType
	if contentType == "application/vnd.kubernetes.protobuf" {
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(&rest.Config{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

func TestClientGoTypedProtobuf(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	for _, ct := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		t.Run(ct, func(t *testing.T) {
			cs, _ := clients(t, ts, ct)
			name := fmt.Sprintf("cm-%d", len(ct))
			cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"k": "v"}},
				Data:       map[string]string{"a": "1"},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if cm.UID == "" || cm.ResourceVersion == "" || cm.CreationTimestamp.IsZero() {
				t.Errorf("create did not fill metadata: %+v", cm.ObjectMeta)
			}
			got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil || got.Data["a"] != "1" {
				t.Fatalf("get: %v %v", got, err)
			}
			list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{LabelSelector: "k=v"})
			if err != nil || len(list.Items) == 0 {
				t.Fatalf("list: %v %v", list, err)
			}
			got.Data["a"] = "2"
			updated, err := cs.CoreV1().ConfigMaps("default").Update(ctx, got, metav1.UpdateOptions{})
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			// A stale resourceVersion is a Conflict.
			got.Data["a"] = "3"
			_, err = cs.CoreV1().ConfigMaps("default").Update(ctx, got, metav1.UpdateOptions{})
			if !apierrors.IsConflict(err) {
				t.Fatalf("stale update: got %v, want Conflict", err)
			}
			if updated.ResourceVersion == got.ResourceVersion {
				t.Errorf("update did not change resourceVersion")
			}
			if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Fatalf("get after delete: %v", err)
			}
		})
	}
}

func TestClientGoInformerWatchList(t *testing.T) {
	ts := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, _ := clients(t, ts, "application/vnd.kubernetes.protobuf")
	for i := 0; i < 3; i++ {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pre-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Core().V1().ConfigMaps().Informer()
	var mu sync.Mutex
	seen := map[string]string{}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			mu.Lock()
			seen[obj.(*corev1.ConfigMap).Name] = "added"
			mu.Unlock()
		},
		UpdateFunc: func(_, obj interface{}) {
			mu.Lock()
			seen[obj.(*corev1.ConfigMap).Name] = "updated"
			mu.Unlock()
		},
		DeleteFunc: func(obj interface{}) {
			if cm, ok := obj.(*corev1.ConfigMap); ok {
				mu.Lock()
				seen[cm.Name] = "deleted"
				mu.Unlock()
			}
		},
	})
	factory.Start(ctx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, 20*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync (WatchList initial-events-end bookmark?)")
	}
	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"x": "y"}
	if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "pre-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["pre-1"] == "added" && seen["later"] == "updated" && seen["pre-0"] == "deleted"
	})
}

func TestClientGoDynamicAndApply(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	cs, dyn := clients(t, ts, "application/json")
	gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	dep := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]interface{}{"name": "dyn", "namespace": "default"},
		"spec": map[string]interface{}{
			"selector": map[string]interface{}{"matchLabels": map[string]interface{}{"app": "dyn"}},
			"template": map[string]interface{}{
				"metadata": map[string]interface{}{"labels": map[string]interface{}{"app": "dyn"}},
				"spec": map[string]interface{}{"containers": []interface{}{
					map[string]interface{}{"name": "c", "image": "busybox"}}},
			},
		},
	}}
	created, err := dyn.Resource(gvr).Namespace("default").Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("dynamic create: %v", err)
	}
	if r, _, _ := unstructured.NestedInt64(created.Object, "spec", "replicas"); r != 1 {
		t.Errorf("defaulted replicas = %d, want 1", r)
	}
	list, err := dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("dynamic list: %v %v", list, err)
	}
	_, err = dyn.Resource(gvr).Namespace("default").Patch(ctx, "dyn", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("dynamic patch: %v", err)
	}
	sc, err := cs.AppsV1().Deployments("default").GetScale(ctx, "dyn", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 3 || sc.Status.Selector != "app=dyn" {
		t.Fatalf("scale: %+v %v", sc, err)
	}

	// Server-side apply through apply configurations, then a conflict.
	ac := corev1ac.ConfigMap("applied", "default").WithData(map[string]string{"owner": "a"})
	applied, err := cs.CoreV1().ConfigMaps("default").Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "manager-a"})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(applied.ManagedFields) == 0 || applied.ManagedFields[0].Manager != "manager-a" {
		t.Errorf("managedFields: %+v", applied.ManagedFields)
	}
	ac2 := corev1ac.ConfigMap("applied", "default").WithData(map[string]string{"owner": "b"})
	_, err = cs.CoreV1().ConfigMaps("default").Apply(ctx, ac2, metav1.ApplyOptions{FieldManager: "manager-b"})
	if !apierrors.IsConflict(err) {
		t.Fatalf("conflicting apply: got %v, want Conflict", err)
	}
	forced, err := cs.CoreV1().ConfigMaps("default").Apply(ctx, ac2, metav1.ApplyOptions{FieldManager: "manager-b", Force: true})
	if err != nil || forced.Data["owner"] != "b" {
		t.Fatalf("forced apply: %v %v", forced, err)
	}
}

func TestWatchResumeAndGone(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	cs, _ := clients(t, ts, "application/json")
	first, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w0"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Resume from the first object's revision: exactly the three later creates.
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		select {
		case ev := <-w.ResultChan():
			cm := ev.Object.(*corev1.ConfigMap)
			if ev.Type != watch.Added || cm.Name != fmt.Sprintf("w%d", i) {
				t.Fatalf("event %d: %s %s", i, ev.Type, cm.Name)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event")
		}
	}
	w.Stop()

	// A watch from a compacted revision is 410 Gone.
	if err := compactTo(ts); err != nil {
		t.Fatal(err)
	}
	w, err = cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err == nil {
		ev := <-w.ResultChan()
		if ev.Type != watch.Error || !apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) && !apierrors.IsGone(apierrors.FromObject(ev.Object)) {
			t.Fatalf("watch from compacted revision: %v %+v", ev.Type, ev.Object)
		}
		w.Stop()
	} else if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from compacted revision: %v, want 410", err)
	}
}
