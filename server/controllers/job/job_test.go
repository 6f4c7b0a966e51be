package job

import (
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestNonIndexedJobRunsToCompletion(t *testing.T) {
	h := newHarness(t)
	job := h.createJob(newJob("pi", 2, 3))
	key := "default/pi"

	h.sync(key)
	pods := h.activePods()
	if len(pods) != 2 {
		t.Fatalf("%d pods, want parallelism 2", len(pods))
	}
	p := pods[0]
	if !strings.HasPrefix(p.Name, "pi-") || p.GenerateName != "pi-" {
		t.Errorf("pod name %q generateName %q, want pi-xxxxx", p.Name, p.GenerateName)
	}
	for k, v := range map[string]string{"app": "pi", "batch.kubernetes.io/job-name": "pi", "job-name": "pi",
		"batch.kubernetes.io/controller-uid": string(job.UID), "controller-uid": string(job.UID)} {
		if p.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, p.Labels[k], v)
		}
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != job.UID || ref.Kind != "Job" || ref.APIVersion != "batch/v1" {
		t.Errorf("controller ref %+v", ref)
	}
	if !slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) {
		t.Errorf("finalizers %v, want the tracking finalizer", p.Finalizers)
	}
	st := h.job("pi").Status
	if st.Active != 2 || st.StartTime == nil || st.UncountedTerminatedPods == nil {
		t.Fatalf("status %+v", st)
	}
	if !h.hasEvent("Normal SuccessfulCreate Created pod: " + p.Name) {
		t.Errorf("events %v", h.rec.Events())
	}

	// One succeeds: counted, released, and replaced (2 completions remain).
	h.setPhase(pods[0], corev1.PodSucceeded, 0)
	h.setPhase(pods[1], corev1.PodRunning, 0)
	h.sync(key)
	st = h.job("pi").Status
	if st.Succeeded != 1 || st.Active != 2 || *st.Ready != 1 || len(st.UncountedTerminatedPods.Succeeded) != 0 {
		t.Fatalf("after one success: succeeded %d active %d ready %d uncounted %+v", st.Succeeded, st.Active, *st.Ready, st.UncountedTerminatedPods)
	}
	for _, pod := range h.pods() {
		if pod.Status.Phase == corev1.PodSucceeded && slices.Contains(pod.Finalizers, batchv1.JobTrackingFinalizer) {
			t.Fatal("counted pod keeps its finalizer")
		}
	}

	// A counted pod deleted by someone else is still counted.
	h.kubeletDelete(pods[0])
	h.sync(key)
	if got := h.job("pi").Status.Succeeded; got != 1 {
		t.Fatalf("succeeded %d after pod deletion, want 1", got)
	}

	for _, pod := range h.activePods() {
		h.setPhase(pod, corev1.PodSucceeded, 0)
	}
	h.sync(key)
	job = h.job("pi")
	if got := conditionTypes(job); !slices.Equal(got, []string{"SuccessCriteriaMet=True/CompletionsReached", "Complete=True/CompletionsReached"}) {
		t.Fatalf("conditions %v", got)
	}
	if job.Status.Succeeded != 3 || job.Status.Active != 0 || job.Status.CompletionTime == nil {
		t.Fatalf("final status %+v", job.Status)
	}
	if len(h.activePods()) != 0 {
		t.Fatal("pods created after completion")
	}
	if !h.hasEvent("Normal Completed Job completed") {
		t.Errorf("no Completed event: %v", h.rec.Events())
	}
	// Finished: nothing more happens.
	h.sync(key)
	if len(h.activePods()) != 0 {
		t.Fatal("finished job created pods")
	}
}

func TestIndexedJob(t *testing.T) {
	h := newHarness(t)
	j := newJob("idx", 2, 3)
	mode := batchv1.IndexedCompletion
	j.Spec.CompletionMode = &mode
	h.createJob(j)
	key := "default/idx"

	h.sync(key)
	byIndex := map[int]*corev1.Pod{}
	for _, p := range h.activePods() {
		byIndex[podIndex(p)] = p
	}
	if len(byIndex) != 2 || byIndex[0] == nil || byIndex[1] == nil {
		t.Fatalf("pods by index %v, want 0 and 1", byIndex)
	}
	p := byIndex[1]
	if p.Annotations[batchv1.JobCompletionIndexAnnotation] != "1" || p.Labels[batchv1.JobCompletionIndexAnnotation] != "1" {
		t.Errorf("index annotation/label: %v %v", p.Annotations, p.Labels)
	}
	if p.Spec.Hostname != "idx-1" || !strings.HasPrefix(p.Name, "idx-1-") {
		t.Errorf("hostname %q name %q", p.Spec.Hostname, p.Name)
	}
	env := p.Spec.Containers[0].Env
	if len(env) != 1 || env[0].Name != "JOB_COMPLETION_INDEX" || env[0].ValueFrom.FieldRef.FieldPath != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
		t.Errorf("env %+v", env)
	}

	h.setPhase(byIndex[1], corev1.PodSucceeded, 0)
	h.sync(key)
	st := h.job("idx").Status
	if st.CompletedIndexes != "1" || st.Succeeded != 1 {
		t.Fatalf("completedIndexes %q succeeded %d", st.CompletedIndexes, st.Succeeded)
	}
	var idxs []int
	for _, p := range h.activePods() {
		idxs = append(idxs, podIndex(p))
	}
	slices.Sort(idxs)
	if !slices.Equal(idxs, []int{0, 2}) {
		t.Fatalf("active indexes %v, want [0 2]", idxs)
	}
	// A failed index is retried with the same index (after back-off).
	for _, p := range h.activePods() {
		if podIndex(p) == 0 {
			h.setPhase(p, corev1.PodFailed, 1)
		} else {
			h.setPhase(p, corev1.PodSucceeded, 0)
		}
	}
	if d := h.sync(key); d != 10*time.Second {
		t.Fatalf("requeue %v, want back-off 10s", d)
	}
	h.clock.Step(10 * time.Second)
	h.sync(key)
	act := h.activePods()
	if len(act) != 1 || podIndex(act[0]) != 0 {
		t.Fatalf("active pods %v, want index 0 retried", act)
	}
	h.setPhase(act[0], corev1.PodSucceeded, 0)
	h.sync(key)
	job := h.job("idx")
	if job.Status.CompletedIndexes != "0-2" || job.Status.Succeeded != 3 || job.Status.Failed != 1 || finishTime(job).IsZero() {
		t.Fatalf("final status %+v", job.Status)
	}
}

func TestFailuresBackOffThenBackoffLimitExceeded(t *testing.T) {
	h := newHarness(t)
	j := newJob("flaky", 1, 1)
	limit := int32(2)
	j.Spec.BackoffLimit = &limit
	h.createJob(j)
	key := "default/flaky"

	h.sync(key)
	// Failures 1 and 2 are retried after 10 s and 20 s.
	for i, wait := range []time.Duration{10 * time.Second, 20 * time.Second} {
		act := h.activePods()
		if len(act) != 1 {
			t.Fatalf("round %d: %d active pods", i, len(act))
		}
		h.setPhase(act[0], corev1.PodFailed, 1)
		if d := h.sync(key); d != wait {
			t.Fatalf("round %d: requeue after %v, want %v", i, d, wait)
		}
		if n := len(h.activePods()); n != 0 {
			t.Fatalf("round %d: pod created during back-off", i)
		}
		if got := h.job("flaky").Status.Failed; got != int32(i+1) {
			t.Fatalf("round %d: failed %d", i, got)
		}
		h.clock.Step(wait / 2)
		if d := h.sync(key); d != wait/2 {
			t.Fatalf("round %d: halfway requeue after %v, want %v", i, d, wait/2)
		}
		h.clock.Step(wait / 2)
		h.sync(key)
	}
	act := h.activePods()
	h.setPhase(act[0], corev1.PodFailed, 1)
	h.sync(key)
	job := h.job("flaky")
	if got := conditionTypes(job); !slices.Equal(got, []string{"FailureTarget=True/BackoffLimitExceeded", "Failed=True/BackoffLimitExceeded"}) {
		t.Fatalf("conditions %v", got)
	}
	if c := conditionTrue(job.Status.Conditions, batchv1.JobFailed); c.Message != "Job has reached the specified backoff limit" {
		t.Errorf("message %q", c.Message)
	}
	if job.Status.Failed != 3 || job.Status.CompletionTime != nil {
		t.Errorf("status %+v", job.Status)
	}
	if !h.hasEvent("Warning BackoffLimitExceeded Job has reached the specified backoff limit") {
		t.Errorf("events %v", h.rec.Events())
	}
}

func TestBackoffDelay(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second},
		{6, 320 * time.Second}, {7, 6 * time.Minute}, {50, 6 * time.Minute},
	} {
		if got := (backoffRecord{failures: tc.failures}).delay(); got != tc.want {
			t.Errorf("delay after %d failures = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestActiveDeadlineExceeded(t *testing.T) {
	h := newHarness(t)
	j := newJob("slow", 2, 4)
	deadline := int64(30)
	j.Spec.ActiveDeadlineSeconds = &deadline
	h.createJob(j)
	key := "default/slow"

	if d := h.sync(key); d <= 29*time.Second || d > 31*time.Second {
		t.Fatalf("requeue after %v, want the deadline (30s)", d)
	}
	for _, p := range h.activePods() {
		h.setPhase(p, corev1.PodRunning, 0)
	}
	h.clock.Step(30 * time.Second)
	h.sync(key)
	job := h.job("slow")
	if got := conditionTypes(job); !slices.Equal(got, []string{"FailureTarget=True/DeadlineExceeded"}) {
		t.Fatalf("conditions %v, want FailureTarget while pods terminate", got)
	}
	terminating := h.pods()
	for _, p := range terminating {
		if p.DeletionTimestamp == nil {
			t.Fatalf("pod %s not deleted", p.Name)
		}
	}
	// The terminating pods are counted as failed; the kubelet finishes them.
	h.sync(key)
	if st := h.job("slow").Status; st.Failed != 2 || *st.Terminating != 2 || st.Active != 0 {
		t.Fatalf("status %+v", st)
	}
	for _, p := range terminating {
		h.kubeletDelete(p)
	}
	h.sync(key)
	job = h.job("slow")
	if c := conditionTrue(job.Status.Conditions, batchv1.JobFailed); c == nil || c.Reason != "DeadlineExceeded" || c.Message != "Job was active longer than specified deadline" {
		t.Fatalf("conditions %v", conditionTypes(job))
	}
	if !h.hasEvent("Warning DeadlineExceeded Job was active longer than specified deadline") {
		t.Errorf("events %v", h.rec.Events())
	}
}

func TestSuspendAndResume(t *testing.T) {
	h := newHarness(t)
	h.createJob(newJob("sus", 2, 2))
	key := "default/sus"
	h.sync(key)
	if len(h.activePods()) != 2 {
		t.Fatal("pods not created")
	}
	suspend := true
	h.updateJob("sus", func(j *batchv1.Job) { j.Spec.Suspend = &suspend })
	h.sync(key)
	if n := len(h.pods()); n != 0 {
		t.Fatalf("%d pods left after suspension (unscheduled pods go at once)", n)
	}
	h.sync(key)
	job := h.job("sus")
	if c := conditionTrue(job.Status.Conditions, batchv1.JobSuspended); c == nil || c.Reason != "JobSuspended" || c.Message != "Job suspended" {
		t.Fatalf("conditions %v", conditionTypes(job))
	}
	if job.Status.Failed != 0 || job.Status.Active != 0 {
		t.Fatalf("suspension counted pods: %+v", job.Status)
	}
	if !h.hasEvent("Normal Suspended Job suspended") {
		t.Errorf("events %v", h.rec.Events())
	}

	h.clock.Step(time.Minute)
	suspend = false
	h.updateJob("sus", func(j *batchv1.Job) { j.Spec.Suspend = &suspend })
	h.sync(key)
	job = h.job("sus")
	if len(h.activePods()) != 2 {
		t.Fatal("pods not recreated after resume")
	}
	c := job.Status.Conditions[0]
	if c.Type != batchv1.JobSuspended || c.Status != corev1.ConditionFalse || c.Reason != "JobResumed" {
		t.Fatalf("conditions %v", conditionTypes(job))
	}
	if !job.Status.StartTime.Time.Equal(h.clock.Now()) {
		t.Errorf("startTime %v not reset on resume (%v)", job.Status.StartTime, h.clock.Now())
	}
	if !h.hasEvent("Normal Resumed Job resumed") {
		t.Errorf("events %v", h.rec.Events())
	}
}

func TestJobCreatedSuspendedCreatesNothing(t *testing.T) {
	h := newHarness(t)
	j := newJob("later", 1, 1)
	suspend := true
	j.Spec.Suspend = &suspend
	h.createJob(j)
	h.sync("default/later")
	job := h.job("later")
	if len(h.pods()) != 0 || job.Status.StartTime != nil || conditionTrue(job.Status.Conditions, batchv1.JobSuspended) == nil {
		t.Fatalf("pods %d status %+v", len(h.pods()), job.Status)
	}
}

func TestTTLAfterFinished(t *testing.T) {
	h := newHarness(t)
	j := newJob("short", 1, 1)
	ttl := int32(100)
	j.Spec.TTLSecondsAfterFinished = &ttl
	h.createJob(j)
	key := "default/short"
	h.sync(key)
	h.setPhase(h.activePods()[0], corev1.PodSucceeded, 0)
	h.sync(key)
	if d := h.sync(key); d != 100*time.Second {
		t.Fatalf("requeue after %v, want the TTL", d)
	}
	h.clock.Step(60 * time.Second)
	if d := h.sync(key); d != 40*time.Second {
		t.Fatalf("requeue after %v, want 40s", d)
	}
	h.clock.Step(40 * time.Second)
	h.sync(key)
	if h.api.Exists(jobsGVR, "default", "short") {
		t.Fatal("job not deleted after its TTL")
	}
	var deleted bool
	for _, a := range h.api.Actions() {
		if a.Verb == "delete" && a.Resource == "jobs.batch" && a.Name == "short" && a.Propagation == metav1.DeletePropagationBackground {
			deleted = true
		}
	}
	if !deleted {
		t.Fatalf("no background delete of the job: %v", h.api.Actions())
	}
}

func TestPodFailurePolicy(t *testing.T) {
	exitCodes := func(action batchv1.PodFailurePolicyAction, op batchv1.PodFailurePolicyOnExitCodesOperator, codes ...int32) batchv1.PodFailurePolicyRule {
		return batchv1.PodFailurePolicyRule{Action: action, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: op, Values: codes}}
	}
	policy := &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}}},
		exitCodes(batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyOnExitCodesOpIn, 42),
		exitCodes(batchv1.PodFailurePolicyActionCount, batchv1.PodFailurePolicyOnExitCodesOpNotIn, 42),
	}}
	h := newHarness(t)
	j := newJob("pfp", 1, 1)
	j.Spec.PodFailurePolicy = policy
	h.createJob(j)
	key := "default/pfp"
	h.sync(key)

	// Disrupted: ignored, replaced at once without back-off.
	pod := h.activePods()[0]
	h.setPhase(pod, corev1.PodFailed, 137)
	obj, _ := h.api.Get(h.ctx, podsGVR, "default", pod.Name)
	p := obj.(*corev1.Pod)
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue})
	if _, err := h.api.Update(h.ctx, podsGVR, p, "status", "test"); err != nil {
		t.Fatal(err)
	}
	if d := h.sync(key); d != 0 {
		t.Fatalf("ignored failure backed off %v", d)
	}
	if st := h.job("pfp").Status; st.Failed != 0 || len(h.activePods()) != 1 {
		t.Fatalf("ignored failure: failed %d, %d active pods", st.Failed, len(h.activePods()))
	}

	// Exit code 42: the job fails at once.
	pod = h.activePods()[0]
	h.setPhase(pod, corev1.PodFailed, 42)
	h.sync(key)
	job := h.job("pfp")
	want := "Container main for pod default/" + pod.Name + " failed with exit code 42 matching FailJob rule at index 1"
	c := conditionTrue(job.Status.Conditions, batchv1.JobFailed)
	if c == nil || c.Reason != "PodFailurePolicy" || c.Message != want {
		t.Fatalf("conditions %+v, want Failed/PodFailurePolicy %q", job.Status.Conditions, want)
	}
	if job.Status.Failed != 1 {
		t.Errorf("failed %d", job.Status.Failed)
	}
}

func TestMatchFailurePolicy(t *testing.T) {
	name := "side"
	failed := func(code int32, conds ...corev1.PodConditionType) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{
			{Name: "ok", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
			{Name: "side", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}},
		}
		for _, c := range conds {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue})
		}
		return p
	}
	rule := func(action batchv1.PodFailurePolicyAction, container *string, op batchv1.PodFailurePolicyOnExitCodesOperator, codes ...int32) batchv1.PodFailurePolicyRule {
		return batchv1.PodFailurePolicyRule{Action: action, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{ContainerName: container, Operator: op, Values: codes}}
	}
	for _, tc := range []struct {
		name   string
		rules  []batchv1.PodFailurePolicyRule
		pod    *corev1.Pod
		action string
		msg    string
	}{
		{"no rules", nil, failed(3), "", ""},
		{"In matches", []batchv1.PodFailurePolicyRule{rule(batchv1.PodFailurePolicyActionFailJob, nil, batchv1.PodFailurePolicyOnExitCodesOpIn, 3)},
			failed(3), "FailJob", "Container side for pod ns/p failed with exit code 3 matching FailJob rule at index 0"},
		{"NotIn skips exit 0", []batchv1.PodFailurePolicyRule{rule(batchv1.PodFailurePolicyActionCount, nil, batchv1.PodFailurePolicyOnExitCodesOpNotIn, 5)},
			failed(3), "Count", "Container side for pod ns/p failed with exit code 3 matching Count rule at index 0"},
		{"container name mismatch", []batchv1.PodFailurePolicyRule{rule(batchv1.PodFailurePolicyActionFailJob, new(string), batchv1.PodFailurePolicyOnExitCodesOpIn, 3)},
			failed(3), "", ""},
		{"container name match", []batchv1.PodFailurePolicyRule{rule(batchv1.PodFailurePolicyActionIgnore, &name, batchv1.PodFailurePolicyOnExitCodesOpIn, 3)},
			failed(3), "Ignore", "Container side for pod ns/p failed with exit code 3 matching Ignore rule at index 0"},
		{"first rule wins", []batchv1.PodFailurePolicyRule{
			{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
			rule(batchv1.PodFailurePolicyActionFailJob, nil, batchv1.PodFailurePolicyOnExitCodesOpIn, 3)},
			failed(3, corev1.DisruptionTarget), "Ignore", "Pod ns/p has condition DisruptionTarget matching Ignore rule at index 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action, msg := matchFailurePolicy(&batchv1.PodFailurePolicy{Rules: tc.rules}, tc.pod)
			got := ""
			if action != nil {
				got = string(*action)
			}
			if got != tc.action || msg != tc.msg {
				t.Fatalf("got %q %q, want %q %q", got, msg, tc.action, tc.msg)
			}
		})
	}
}

func TestIndexSet(t *testing.T) {
	for _, tc := range []struct {
		in          string
		completions int
		want        string
	}{
		{"", 5, ""},
		{"0", 5, "0"},
		{"1,2", 5, "1-2"},
		{"0,2-4,6", 10, "0,2-4,6"},
		{"3,1,2", 10, "1-3"},
		{"1-3,9", 5, "1-3"},
		{"x,2,4-3,-1", 5, "2"},
	} {
		if got := parseIndexes(tc.in, tc.completions).String(); got != tc.want {
			t.Errorf("parseIndexes(%q, %d) = %q, want %q", tc.in, tc.completions, got, tc.want)
		}
	}
}

func TestUncountedPodsAreFlushedAfterACrash(t *testing.T) {
	h := newHarness(t)
	h.createJob(newJob("crash", 1, 2))
	key := "default/crash"
	h.sync(key)
	pod := h.activePods()[0]
	h.setPhase(pod, corev1.PodSucceeded, 0)
	// As if a controller crashed after recording the pod and removing its
	// finalizer, before moving it into the counts.
	job := h.job("crash")
	job.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: []types.UID{pod.UID}}
	if _, err := h.api.Update(h.ctx, jobsGVR, job, "status", "test"); err != nil {
		t.Fatal(err)
	}
	obj, _ := h.api.Get(h.ctx, podsGVR, "default", pod.Name)
	p := obj.(*corev1.Pod)
	p.Finalizers = nil
	if _, err := h.api.Update(h.ctx, podsGVR, p, "", "test"); err != nil {
		t.Fatal(err)
	}
	h.sync(key)
	st := h.job("crash").Status
	if st.Succeeded != 1 || len(st.UncountedTerminatedPods.Succeeded) != 0 {
		t.Fatalf("status %+v, want the uncounted pod counted once", st)
	}
	h.sync(key)
	if st := h.job("crash").Status; st.Succeeded != 1 {
		t.Fatalf("counted twice: %d", st.Succeeded)
	}
}

func TestDeletedJobReleasesPods(t *testing.T) {
	h := newHarness(t)
	h.createJob(newJob("gone", 2, 2))
	key := "default/gone"
	h.sync(key)
	for _, p := range h.pods() {
		h.setPhase(p, corev1.PodRunning, 0)
	}
	h.waitCache()
	if _, err := h.api.Delete(h.ctx, jobsGVR, "default", "gone", nil); err != nil {
		t.Fatal(err)
	}
	h.waitCache()
	for _, p := range h.pods() {
		h.sync(podKeyPrefix + "default/" + p.Name)
	}
	for _, p := range h.pods() {
		if hasFinalizer(p) {
			t.Fatalf("pod %s of a deleted job keeps the tracking finalizer", p.Name)
		}
	}
}
