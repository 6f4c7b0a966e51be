package deployment

import (
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/orch-dev/orch/server/controllers/controllertest"
)

func TestCreateRollsOutNewReplicaSet(t *testing.T) {
	e := newEnv(t)
	e.create(t, newDeployment("web", 3, "nginx:1"))
	d := e.waitRolledOut(t, "web")

	hash := ComputeHash(&d.Spec.Template, nil)
	rs := e.replicaSetFor(t, d)
	if rs == nil || rs.Name != "web-"+hash {
		t.Fatalf("replica set %v, want web-%s", rs, hash)
	}
	if rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash || rs.Spec.Selector.MatchLabels["app"] != "web" {
		t.Errorf("pod-template-hash missing: labels %v template %v selector %v", rs.Labels, rs.Spec.Template.Labels, rs.Spec.Selector)
	}
	ref := metav1.GetControllerOf(rs)
	if ref == nil || ref.UID != d.UID || ref.Kind != "Deployment" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("owner %+v", ref)
	}
	// 25% of 3 surges to 1 (rounded up).
	wantAnn := map[string]string{RevisionAnnotation: "1", DesiredReplicasAnnotation: "3", MaxReplicasAnnotation: "4"}
	for k, v := range wantAnn {
		if rs.Annotations[k] != v {
			t.Errorf("replica set annotation %s=%q, want %q", k, rs.Annotations[k], v)
		}
	}
	if d.Annotations[RevisionAnnotation] != "1" {
		t.Errorf("deployment revision %q, want 1", d.Annotations[RevisionAnnotation])
	}
	st := d.Status
	if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != 1 {
		t.Errorf("status %+v", st)
	}
	avail := getCondition(st, appsv1.DeploymentAvailable)
	if avail == nil || avail.Status != corev1.ConditionTrue || avail.Reason != "MinimumReplicasAvailable" || avail.Message != "Deployment has minimum availability." {
		t.Errorf("Available condition %+v", avail)
	}
	prog := getCondition(st, appsv1.DeploymentProgressing)
	if want := fmt.Sprintf("ReplicaSet %q has successfully progressed.", rs.Name); prog.Status != corev1.ConditionTrue || prog.Message != want {
		t.Errorf("Progressing condition %+v, want message %q", prog, want)
	}
	if want := fmt.Sprintf("Normal ScalingReplicaSet Scaled up replica set %s from 0 to 3", rs.Name); !e.hasEvent(want) {
		t.Errorf("missing event %q in %v", want, e.rec.Events())
	}
	// The condition history went through NewReplicaSetCreated.
	var reasons []string
	e.history(t, deploymentsGVR, func(ev watch.Event) {
		if c := getCondition(ev.Object.(*appsv1.Deployment).Status, appsv1.DeploymentProgressing); c != nil {
			if len(reasons) == 0 || reasons[len(reasons)-1] != c.Reason {
				reasons = append(reasons, c.Reason)
			}
		}
	})
	if len(reasons) == 0 || reasons[0] != "NewReplicaSetCreated" || reasons[len(reasons)-1] != "NewReplicaSetAvailable" {
		t.Errorf("Progressing reasons %v", reasons)
	}
}

func TestRollingUpdateRespectsSurgeAndUnavailable(t *testing.T) {
	e := newEnv(t)
	d := newDeployment("web", 4, "nginx:1")
	surge, unavailable := intstr.FromInt32(1), intstr.FromInt32(0)
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}
	e.create(t, d)
	d = e.waitRolledOut(t, "web")
	oldRS := e.replicaSetFor(t, d)

	// New pods stay unready: the rollout must stop at one surge pod.
	next := d.DeepCopy()
	next.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	newHash := ComputeHash(&next.Spec.Template, nil)
	e.kubelet.SetReady(func(p *corev1.Pod) bool { return p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != newHash })
	e.setImage(t, "web", "nginx:2")
	controllertest.Eventually(t, 15*time.Second, "surge replica set", func() bool {
		rs := e.replicaSetFor(t, next)
		return rs != nil && replicasOf(rs) == 1
	})
	time.Sleep(100 * time.Millisecond)
	if n := replicasOf(e.replicaSetFor(t, next)); n != 1 {
		t.Fatalf("new replica set at %d while its pod is unready, want 1", n)
	}
	if n := replicasOf(e.replicaSetFor(t, d)); n != 4 {
		t.Fatalf("old replica set at %d while the new pod is unready, want 4 (maxUnavailable 0)", n)
	}
	if cur := e.get(t, "web"); rolledOut(cur) {
		t.Fatal("rollout reported complete")
	}

	e.kubelet.SetReady(nil)
	d2 := e.waitRolledOut(t, "web")
	newRS := e.replicaSetFor(t, d2)
	if newRS.Name != "web-"+newHash || newRS.Annotations[RevisionAnnotation] != "2" || d2.Annotations[RevisionAnnotation] != "2" {
		t.Errorf("new replica set %s revision %q, deployment revision %q", newRS.Name, newRS.Annotations[RevisionAnnotation], d2.Annotations[RevisionAnnotation])
	}
	controllertest.Eventually(t, 15*time.Second, "old replica set scaled to zero", func() bool {
		rs := e.replicaSetFor(t, d)
		return rs != nil && replicasOf(rs) == 0 && rs.Status.Replicas == 0
	})

	// At no point did the ReplicaSets ask for more than 4+1 pods, or did
	// fewer than 4 pods report available once the first rollout was done.
	settled := false
	e.rsHistory(t, func(state map[string]*appsv1.ReplicaSet) {
		var spec, avail int32
		for _, rs := range state {
			spec += replicasOf(rs)
			avail += rs.Status.AvailableReplicas
		}
		if spec > 5 {
			t.Errorf("ReplicaSets asked for %d pods, more than replicas+maxSurge=5", spec)
		}
		if avail >= 4 {
			settled = true
		}
		if settled && avail < 4 {
			t.Errorf("only %d available pods during the rollout, want at least 4 (maxUnavailable 0)", avail)
		}
	})
	for _, want := range []string{
		fmt.Sprintf("Scaled up replica set %s from 0 to 1", newRS.Name),
		fmt.Sprintf("Scaled down replica set %s from 4 to 3", oldRS.Name),
		fmt.Sprintf("Scaled down replica set %s from 1 to 0", oldRS.Name),
	} {
		if !e.hasEvent(want) {
			t.Errorf("missing event %q in %v", want, e.rec.Events())
		}
	}
}

func TestFenceposts(t *testing.T) {
	cases := []struct {
		replicas              int32
		surge, unavailable    intstr.IntOrString
		wantSurge, wantUnavai int32
	}{
		{10, intstr.FromString("25%"), intstr.FromString("25%"), 3, 2},
		{3, intstr.FromString("25%"), intstr.FromString("25%"), 1, 0},
		{4, intstr.FromInt32(0), intstr.FromInt32(0), 0, 1},
		{5, intstr.FromString("0%"), intstr.FromString("10%"), 0, 1},
		{2, intstr.FromInt32(1), intstr.FromInt32(5), 1, 2},
		{0, intstr.FromString("50%"), intstr.FromString("50%"), 0, 0},
	}
	for _, tc := range cases {
		d := newDeployment("d", tc.replicas, "x")
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &tc.surge, MaxUnavailable: &tc.unavailable}
		if s, u := maxSurge(d), maxUnavailable(d); s != tc.wantSurge || u != tc.wantUnavai {
			t.Errorf("replicas %d surge %s unavailable %s: got %d/%d, want %d/%d", tc.replicas, tc.surge.String(), tc.unavailable.String(), s, u, tc.wantSurge, tc.wantUnavai)
		}
	}
	d := newDeployment("d", 3, "x")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if maxSurge(d) != 0 || maxUnavailable(d) != 0 {
		t.Error("Recreate has surge or unavailable")
	}
}

func TestRecreateNeverOverlaps(t *testing.T) {
	e := newEnv(t)
	d := newDeployment("web", 3, "nginx:1")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	e.create(t, d)
	d = e.waitRolledOut(t, "web")
	oldHash := e.replicaSetFor(t, d).Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	e.setImage(t, "web", "nginx:2")
	d2 := e.waitRolledOut(t, "web")
	newHash := e.replicaSetFor(t, d2).Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	if newHash == oldHash {
		t.Fatal("no new replica set")
	}
	// Replay the pods: no new pod may exist while an old one does.
	pods := map[string]string{}
	e.history(t, podsGVR, func(ev watch.Event) {
		p := ev.Object.(*corev1.Pod)
		if ev.Type == watch.Deleted {
			delete(pods, p.Name)
		} else {
			pods[p.Name] = p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		}
		var old, cur int
		for _, h := range pods {
			switch h {
			case oldHash:
				old++
			case newHash:
				cur++
			}
		}
		if old > 0 && cur > 0 {
			t.Fatalf("old and new pods at once: %v", pods)
		}
	})
}

func TestPauseAndResume(t *testing.T) {
	e := newEnv(t)
	e.create(t, newDeployment("web", 2, "nginx:1"))
	d := e.waitRolledOut(t, "web")

	e.change(t, "web", func(d *appsv1.Deployment) { d.Spec.Paused = true })
	controllertest.Eventually(t, 15*time.Second, "paused condition", func() bool {
		c := getCondition(e.get(t, "web").Status, appsv1.DeploymentProgressing)
		return c != nil && c.Status == corev1.ConditionUnknown && c.Reason == "DeploymentPaused" && c.Message == "Deployment is paused"
	})
	e.setImage(t, "web", "nginx:2")
	// Resizing a paused Deployment works; rolling does not.
	e.change(t, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = int32p(4) })
	controllertest.Eventually(t, 15*time.Second, "paused deployment resized", func() bool {
		cur := e.get(t, "web")
		return cur.Status.ObservedGeneration == cur.Generation && cur.Status.AvailableReplicas == 4
	})
	if rss := e.replicaSets(t); len(rss) != 1 || replicasOf(rss[0]) != 4 || rss[0].UID != e.replicaSetFor(t, d).UID {
		t.Fatalf("paused deployment rolled: %d replica sets", len(rss))
	}

	e.change(t, "web", func(d *appsv1.Deployment) { d.Spec.Paused = false })
	var sawResumed bool
	d2 := e.waitRolledOut(t, "web")
	e.history(t, deploymentsGVR, func(ev watch.Event) {
		if c := getCondition(ev.Object.(*appsv1.Deployment).Status, appsv1.DeploymentProgressing); c != nil && c.Reason == "DeploymentResumed" && c.Message == "Deployment is resumed" {
			sawResumed = true
		}
	})
	if !sawResumed {
		t.Error("no DeploymentResumed condition")
	}
	if d2.Spec.Template.Spec.Containers[0].Image != "nginx:2" || e.replicaSetFor(t, d2) == nil || d2.Annotations[RevisionAnnotation] != "2" {
		t.Errorf("resume did not roll out nginx:2 as revision 2")
	}
}

func TestRevisionHistoryLimit(t *testing.T) {
	e := newEnv(t)
	d := newDeployment("web", 1, "v1")
	d.Spec.RevisionHistoryLimit = int32p(1)
	e.create(t, d)
	e.waitRolledOut(t, "web")
	for _, img := range []string{"v2", "v3", "v4"} {
		e.setImage(t, "web", img)
		e.waitRolledOut(t, "web")
	}
	controllertest.Eventually(t, 15*time.Second, "history cleaned up to one old replica set", func() bool { return len(e.replicaSets(t)) == 2 })
	revs := map[string]string{}
	for _, rs := range e.replicaSets(t) {
		revs[rs.Spec.Template.Spec.Containers[0].Image] = rs.Annotations[RevisionAnnotation]
	}
	if want := map[string]string{"v3": "3", "v4": "4"}; fmt.Sprint(revs) != fmt.Sprint(want) {
		t.Errorf("kept revisions %v, want %v", revs, want)
	}
}

func TestRollbackReusesOldReplicaSet(t *testing.T) {
	e := newEnv(t)
	e.create(t, newDeployment("web", 2, "v1"))
	d1 := e.waitRolledOut(t, "web")
	rs1 := e.replicaSetFor(t, d1)
	e.setImage(t, "web", "v2")
	e.waitRolledOut(t, "web")

	// kubectl rollout undo writes revision 1's template back.
	e.change(t, "web", func(d *appsv1.Deployment) { d.Spec.Template = *d1.Spec.Template.DeepCopy() })
	d3 := e.waitRolledOut(t, "web")
	rs := e.replicaSetFor(t, d3)
	if rs.UID != rs1.UID {
		t.Fatalf("rollback created %s instead of reusing %s", rs.Name, rs1.Name)
	}
	if rs.Annotations[RevisionAnnotation] != "3" || rs.Annotations[RevisionHistoryAnnotation] != "1" {
		t.Errorf("reused replica set revision %q history %q, want 3 and 1", rs.Annotations[RevisionAnnotation], rs.Annotations[RevisionHistoryAnnotation])
	}
	if d3.Annotations[RevisionAnnotation] != "3" {
		t.Errorf("deployment revision %q, want 3", d3.Annotations[RevisionAnnotation])
	}
	if n := len(e.replicaSets(t)); n != 2 {
		t.Errorf("%d replica sets, want 2", n)
	}
}

func TestProgressDeadlineExceeded(t *testing.T) {
	e := newEnv(t)
	e.kubelet.SetReady(func(*corev1.Pod) bool { return false })
	d := newDeployment("web", 1, "v1")
	d.Spec.ProgressDeadlineSeconds = int32p(1)
	e.create(t, d)
	controllertest.Eventually(t, 15*time.Second, "deadline exceeded", func() bool {
		c := getCondition(e.get(t, "web").Status, appsv1.DeploymentProgressing)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded"
	})
	cur := e.get(t, "web")
	rs := e.replicaSetFor(t, cur)
	c := getCondition(cur.Status, appsv1.DeploymentProgressing)
	if want := fmt.Sprintf("ReplicaSet %q has timed out progressing.", rs.Name); c.Message != want {
		t.Errorf("message %q, want %q", c.Message, want)
	}
	avail := getCondition(cur.Status, appsv1.DeploymentAvailable)
	if avail == nil || avail.Status != corev1.ConditionFalse || avail.Reason != "MinimumReplicasUnavailable" || avail.Message != "Deployment does not have minimum availability." {
		t.Errorf("Available condition %+v", avail)
	}
	if cur.Status.UnavailableReplicas != 1 {
		t.Errorf("unavailableReplicas %d, want 1", cur.Status.UnavailableReplicas)
	}
}

func TestProportionalScalingDuringRollout(t *testing.T) {
	e := newEnv(t)
	d := newDeployment("web", 10, "v1")
	surge, unavailable := intstr.FromInt32(3), intstr.FromInt32(2)
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}
	e.create(t, d)
	d = e.waitRolledOut(t, "web")
	next := d.DeepCopy()
	next.Spec.Template.Spec.Containers[0].Image = "v2"
	newHash := ComputeHash(&next.Spec.Template, nil)
	e.kubelet.SetReady(func(p *corev1.Pod) bool { return p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != newHash })
	e.setImage(t, "web", "v2")
	// Stuck with unready new pods: old 10-2=8, new 3+2=5.
	controllertest.Eventually(t, 15*time.Second, "rollout stuck at 8+5", func() bool {
		o, n := e.replicaSetFor(t, d), e.replicaSetFor(t, next)
		return n != nil && replicasOf(o) == 8 && replicasOf(n) == 5
	})
	e.change(t, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = int32p(20) })
	// 23 allowed: old gets round(8*23/13)-8=6, new the remaining 4.
	controllertest.Eventually(t, 15*time.Second, "proportional scale to 14+9", func() bool {
		o, n := e.replicaSetFor(t, d), e.replicaSetFor(t, next)
		return replicasOf(o) == 14 && replicasOf(n) == 9
	})
	e.kubelet.SetReady(nil)
	e.waitRolledOut(t, "web")
}

func TestHashCollisionBumpsCollisionCount(t *testing.T) {
	e := newEnv(t)
	d := newDeployment("web", 1, "v1")
	hash := ComputeHash(&d.Spec.Template, nil)
	// Someone else's ReplicaSet holds the name (and is not adoptable).
	squatter := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-" + hash, Labels: map[string]string{"app": "other"}},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: int32p(0),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "other"}}},
		},
	}
	if _, err := e.api.Create(e.ctx, replicaSetsGVR, squatter, "test"); err != nil {
		t.Fatal(err)
	}
	e.create(t, d)
	cur := e.waitRolledOut(t, "web")
	if cur.Status.CollisionCount == nil || *cur.Status.CollisionCount != 1 {
		t.Fatalf("collisionCount %v, want 1", cur.Status.CollisionCount)
	}
	rs := e.replicaSetFor(t, cur)
	if want := "web-" + ComputeHash(&d.Spec.Template, int32p(1)); rs.Name != want {
		t.Errorf("replica set %s, want %s", rs.Name, want)
	}
}

func TestComputeHashIsStable(t *testing.T) {
	d := newDeployment("web", 1, "nginx:1")
	a, b := ComputeHash(&d.Spec.Template, nil), ComputeHash(d.Spec.Template.DeepCopy(), nil)
	if a != b || a == ComputeHash(&d.Spec.Template, int32p(1)) {
		t.Fatalf("hash not stable or ignores the collision count: %s %s", a, b)
	}
	if slices.ContainsFunc([]rune(a), func(r rune) bool { return r == 'a' || r == 'e' || r == 'i' || r == 'o' || r == 'u' }) {
		t.Errorf("hash %s has vowels", a)
	}
}

func TestMinReadySecondsDelaysAvailability(t *testing.T) {
	e := newEnv(t)
	d := newDeployment("web", 2, "v1")
	d.Spec.MinReadySeconds = 1
	start := time.Now()
	e.create(t, d)
	controllertest.Eventually(t, 15*time.Second, "pods ready", func() bool { return e.get(t, "web").Status.ReadyReplicas == 2 })
	if cur := e.get(t, "web"); cur.Status.AvailableReplicas == 2 && time.Since(start) < time.Second {
		t.Fatalf("pods available before minReadySeconds")
	}
	cur := e.waitRolledOut(t, "web")
	if time.Since(start) < time.Second {
		t.Fatalf("rolled out after %v, before minReadySeconds", time.Since(start))
	}
	if rs := e.replicaSetFor(t, cur); rs.Spec.MinReadySeconds != 1 {
		t.Errorf("replica set minReadySeconds %d, want 1", rs.Spec.MinReadySeconds)
	}
}

func TestAdoptsOrphanReplicaSet(t *testing.T) {
	e := newEnv(t)
	d := newDeployment("web", 2, "v1")
	// A ReplicaSet left behind by `kubectl delete deploy --cascade=orphan`.
	orphan := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-orphaned", Labels: map[string]string{"app": "web"}},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: int32p(2),
			Selector: d.Spec.Selector.DeepCopy(),
			Template: *d.Spec.Template.DeepCopy(),
		},
	}
	if _, err := e.api.Create(e.ctx, replicaSetsGVR, orphan, "test"); err != nil {
		t.Fatal(err)
	}
	e.create(t, d)
	cur := e.waitRolledOut(t, "web")
	rss := e.replicaSets(t)
	if len(rss) != 1 || rss[0].Name != "web-orphaned" {
		t.Fatalf("replica sets %d (%s), want only the adopted one", len(rss), rss[0].Name)
	}
	if ref := metav1.GetControllerOf(rss[0]); ref == nil || ref.UID != cur.UID {
		t.Fatalf("orphan not adopted: %+v", ref)
	}
	if rss[0].Annotations[RevisionAnnotation] != "1" {
		t.Errorf("adopted replica set revision %q, want 1", rss[0].Annotations[RevisionAnnotation])
	}
}
