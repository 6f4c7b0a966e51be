package apiserver_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestStaleUID: an update or patch naming the uid of an object that was
// deleted and created again under the same name is refused, as upstream
// refuses it (a PUT's uid is a storage precondition: 409; a patch that
// sets another uid fails validation: 422), instead of being applied to
// the new object.
func TestStaleUID(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	cs, _ := clients(t, ts, "application/json")
	cms := cs.CoreV1().ConfigMaps("default")
	old, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Data: map[string]string{"v": "old"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "cm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Data: map[string]string{"v": "new"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	preconditionMsg := fmt.Sprintf(`Operation cannot be fulfilled on configmaps "cm": StorageError: invalid object, Code: 4, Key: /registry/core/configmaps/default/cm, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: %s, UID in object meta: %s`, old.UID, cur.UID)
	immutableMsg := fmt.Sprintf(`ConfigMap "cm" is invalid: metadata.uid: Invalid value: "%s": field is immutable`, old.UID)
	withUID := func(uid types.UID, rv string) *corev1.ConfigMap {
		cm := cur.DeepCopy()
		cm.UID, cm.ResourceVersion = uid, rv
		cm.Data = map[string]string{"v": "written"}
		return cm
	}

	tests := []struct {
		name    string
		write   func() error
		wantErr func(error) bool
		wantMsg string
	}{
		{"PUT with the old uid, unconditional", func() error {
			_, err := cms.Update(ctx, withUID(old.UID, ""), metav1.UpdateOptions{})
			return err
		}, apierrors.IsConflict, preconditionMsg},
		{"PUT with the old uid and the current resourceVersion", func() error {
			_, err := cms.Update(ctx, withUID(old.UID, cur.ResourceVersion), metav1.UpdateOptions{})
			return err
		}, apierrors.IsConflict, preconditionMsg},
		{"in-process update with the old uid", func() error {
			_, err := ts.api.Local().Update(ctx, corev1.SchemeGroupVersion.WithResource("configmaps"), withUID(old.UID, ""), "", "test")
			return err
		}, apierrors.IsConflict, preconditionMsg},
		{"merge patch setting the old uid", func() error {
			_, err := cms.Patch(ctx, "cm", types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"uid":%q},"data":{"v":"written"}}`, old.UID), metav1.PatchOptions{})
			return err
		}, apierrors.IsInvalid, immutableMsg},
		{"strategic merge patch setting the old uid", func() error {
			_, err := cms.Patch(ctx, "cm", types.StrategicMergePatchType, fmt.Appendf(nil, `{"metadata":{"uid":%q},"data":{"v":"written"}}`, old.UID), metav1.PatchOptions{})
			return err
		}, apierrors.IsInvalid, immutableMsg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.write()
			if !tc.wantErr(err) || err.Error() != tc.wantMsg {
				t.Fatalf("got %v\nwant %s", err, tc.wantMsg)
			}
			got, err := cms.Get(ctx, "cm", metav1.GetOptions{})
			if err != nil || got.UID != cur.UID || got.Data["v"] != "new" || got.ResourceVersion != cur.ResourceVersion {
				t.Errorf("stored object changed: %+v, %v", got, err)
			}
		})
	}

	// The current uid, or none, writes as before.
	for _, uid := range []types.UID{cur.UID, ""} {
		got, err := cms.Update(ctx, withUID(uid, ""), metav1.UpdateOptions{})
		if err != nil || got.UID != cur.UID {
			t.Fatalf("update with uid %q: %+v, %v", uid, got, err)
		}
	}
	got, err := cms.Patch(ctx, "cm", types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"uid":%q},"data":{"v":"patched"}}`, cur.UID), metav1.PatchOptions{})
	if err != nil || got.UID != cur.UID || got.Data["v"] != "patched" {
		t.Fatalf("patch with the current uid: %+v, %v", got, err)
	}
}

// TestStaleUIDStatusPatch: a status patch naming the uid of a pod that was
// replaced under the same name (the kubelet's status manager sends the uid
// for this) is refused, although the status strategy keeps the stored
// metadata; with the current uid it is written.
func TestStaleUIDStatusPatch(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	cs, _ := clients(t, ts, "application/json")
	pods := cs.CoreV1().Pods("default")
	newPod := func() *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	}
	old, err := pods.Create(ctx, newPod(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	cur, err := pods.Create(ctx, newPod(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	patch := func(uid types.UID) error {
		_, err := pods.Patch(ctx, "p", types.StrategicMergePatchType, fmt.Appendf(nil, `{"metadata":{"uid":%q},"status":{"phase":"Running"}}`, uid), metav1.PatchOptions{}, "status")
		return err
	}
	want := fmt.Sprintf(`Pod "p" is invalid: metadata.uid: Invalid value: "%s": field is immutable`, old.UID)
	if err := patch(old.UID); !apierrors.IsInvalid(err) || err.Error() != want {
		t.Fatalf("status patch with the old uid: %v\nwant %s", err, want)
	}
	if got, err := pods.Get(ctx, "p", metav1.GetOptions{}); err != nil || got.Status.Phase == corev1.PodRunning {
		t.Fatalf("the new pod got the old one's status: %+v, %v", got.Status, err)
	}
	if err := patch(cur.UID); err != nil {
		t.Fatalf("status patch with the current uid: %v", err)
	}
	if got, err := pods.Get(ctx, "p", metav1.GetOptions{}); err != nil || got.Status.Phase != corev1.PodRunning || got.UID != cur.UID {
		t.Fatalf("after the status patch: %+v %s, %v", got.Status, got.UID, err)
	}
}
