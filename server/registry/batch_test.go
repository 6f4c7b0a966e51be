package registry

import (
	"maps"
	"math"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const testJobUID = "6f1c2a52-1d3e-4c55-9b1e-0a7b5c2d9e10"

func newTestJob() *batchv1.Job {
	tmpl := testPodTemplate(nil)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "pi", Namespace: "default", UID: testJobUID},
		Spec:       batchv1.JobSpec{Template: tmpl},
	}
}

// createJob runs the create path the handler runs: defaults, then
// PrepareForCreate (the handler has set the uid before both).
func createJob(t *testing.T, r *Resource, job *batchv1.Job) *batchv1.Job {
	t.Helper()
	r.Default(job)
	r.PrepareForCreate(job)
	return job
}

func TestJobDefaults(t *testing.T) {
	r := groupResource(t, "batch", "v1", "jobs")
	tests := []struct {
		name                                   string
		mutate                                 func(j *batchv1.Job)
		completions, parallelism, backoffLimit *int32
		replacement                            batchv1.PodReplacementPolicy
	}{
		{"both unset", func(*batchv1.Job) {}, ptr.To[int32](1), ptr.To[int32](1), ptr.To[int32](6), batchv1.TerminatingOrFailed},
		{"parallelism only", func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](3) }, nil, ptr.To[int32](3), ptr.To[int32](6), batchv1.TerminatingOrFailed},
		{"completions only", func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](5) }, ptr.To[int32](5), ptr.To[int32](1), ptr.To[int32](6), batchv1.TerminatingOrFailed},
		{"backoff per index", func(j *batchv1.Job) { j.Spec.BackoffLimitPerIndex = ptr.To[int32](1) }, ptr.To[int32](1), ptr.To[int32](1), ptr.To[int32](math.MaxInt32), batchv1.TerminatingOrFailed},
		{"pod failure policy", func(j *batchv1.Job) {
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}},
			}}}
		}, ptr.To[int32](1), ptr.To[int32](1), ptr.To[int32](6), batchv1.Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newTestJob()
			tt.mutate(j)
			r.Default(j)
			s := j.Spec
			if sprint(ptr.Deref(s.Completions, -1)) != sprint(ptr.Deref(tt.completions, -1)) || *s.Parallelism != *tt.parallelism || *s.BackoffLimit != *tt.backoffLimit {
				t.Errorf("completions %v parallelism %d backoff %d", s.Completions, *s.Parallelism, *s.BackoffLimit)
			}
			if *s.PodReplacementPolicy != tt.replacement || *s.CompletionMode != batchv1.NonIndexedCompletion || *s.Suspend || *s.ManualSelector {
				t.Errorf("replacement %s mode %s suspend %v manual %v", *s.PodReplacementPolicy, *s.CompletionMode, *s.Suspend, *s.ManualSelector)
			}
			if s.PodFailurePolicy != nil && s.PodFailurePolicy.Rules[0].OnPodConditions[0].Status != corev1.ConditionTrue {
				t.Errorf("pod failure policy pattern status not defaulted")
			}
			if s.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
				t.Errorf("template not defaulted")
			}
		})
	}
}

func TestJobCreateGeneratesSelector(t *testing.T) {
	r := groupResource(t, "batch", "v1", "jobs")
	j := newTestJob()
	j.Spec.Template.Labels = map[string]string{"app": "pi"}
	j.Status.Active = 3
	createJob(t, r, j)
	wantLabels := map[string]string{
		"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
		"controller-uid": testJobUID, "batch.kubernetes.io/controller-uid": testJobUID,
	}
	if !maps.Equal(j.Spec.Template.Labels, wantLabels) {
		t.Errorf("template labels %v", j.Spec.Template.Labels)
	}
	// The job's labels came from the template's and show the generated ones, as in Kubernetes.
	if !maps.Equal(j.Labels, wantLabels) {
		t.Errorf("job labels %v", j.Labels)
	}
	if !maps.Equal(j.Spec.Selector.MatchLabels, map[string]string{"batch.kubernetes.io/controller-uid": testJobUID}) {
		t.Errorf("selector %v", j.Spec.Selector)
	}
	if j.Status.Active != 0 || j.Generation != 1 {
		t.Errorf("status %+v generation %d", j.Status, j.Generation)
	}
	checkErrors(t, r.Validate(j))

	// Without template labels the job keeps no labels.
	j = createJob(t, r, newTestJob())
	if j.Labels != nil || len(j.Spec.Template.Labels) != 4 {
		t.Errorf("labels %v template %v", j.Labels, j.Spec.Template.Labels)
	}

	// A manual selector is left alone and must match by itself.
	j = newTestJob()
	j.Spec.ManualSelector = ptr.To(true)
	j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pi"}}
	j.Spec.Template.Labels = map[string]string{"app": "pi"}
	createJob(t, r, j)
	if len(j.Spec.Template.Labels) != 1 || len(j.Spec.Selector.MatchLabels) != 1 {
		t.Errorf("manual selector changed: %v %v", j.Spec.Template.Labels, j.Spec.Selector)
	}
	checkErrors(t, r.Validate(j))
}

func TestValidateJob(t *testing.T) {
	r := groupResource(t, "batch", "v1", "jobs")
	tests := []struct {
		name   string
		mutate func(j *batchv1.Job)
		want   []string
	}{
		{"valid", func(*batchv1.Job) {}, nil},
		{"restart always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways },
			[]string{"spec.template.spec.restartPolicy: FieldValueRequired"}},
		{"on failure", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }, nil},
		{"wrong uid in selector", func(j *batchv1.Job) { j.Spec.Selector.MatchLabels["batch.kubernetes.io/controller-uid"] = "other" },
			[]string{"spec.selector: FieldValueInvalid", "spec.template.metadata.labels: FieldValueInvalid"}},
		{"generated label removed", func(j *batchv1.Job) { delete(j.Spec.Template.Labels, "job-name") },
			[]string{"spec.template.metadata.labels[job-name]: FieldValueRequired"}},
		{"no selector", func(j *batchv1.Job) { j.Spec.Selector = nil }, []string{"spec.selector: FieldValueRequired"}},
		{"negative parallelism", func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](-1) }, []string{"spec.parallelism: FieldValueInvalid"}},
		{"negative backoff", func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr.To[int32](-1) }, []string{"spec.backoffLimit: FieldValueInvalid"}},
		{"indexed without completions", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			j.Spec.Completions = nil
		}, []string{"spec.completions: FieldValueRequired"}},
		{"unknown completion mode", func(j *batchv1.Job) { j.Spec.CompletionMode = ptr.To(batchv1.CompletionMode("Sometimes")) },
			[]string{"spec.completionMode: FieldValueNotSupported"}},
		{"backoff per index needs indexed", func(j *batchv1.Job) { j.Spec.BackoffLimitPerIndex = ptr.To[int32](1) },
			[]string{"spec.backoffLimitPerIndex: FieldValueInvalid"}},
		{"pod failure policy needs Never", func(j *batchv1.Job) {
			j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
			j.Spec.PodReplacementPolicy = ptr.To(batchv1.Failed)
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}},
			}}}
		}, []string{"spec.template.spec.restartPolicy: FieldValueInvalid"}},
		{"pod failure policy rule without source", func(j *batchv1.Job) {
			j.Spec.PodReplacementPolicy = ptr.To(batchv1.Failed)
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: "Explode"}}}
		}, []string{"spec.podFailurePolicy.rules[0]: FieldValueInvalid", "spec.podFailurePolicy.rules[0].action: FieldValueNotSupported"}},
		{"replacement with failure policy", func(j *batchv1.Job) {
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
			}}}
		}, []string{"spec.podReplacementPolicy: FieldValueNotSupported"}},
		{"negative succeeded", func(j *batchv1.Job) { j.Status.Succeeded = -1 }, []string{"status.succeeded: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := createJob(t, r, newTestJob())
			tt.mutate(j)
			checkErrors(t, r.Validate(j), tt.want...)
		})
	}
}

func TestJobUpdate(t *testing.T) {
	r := groupResource(t, "batch", "v1", "jobs")
	running := createJob(t, r, newTestJob())
	running.Status.StartTime = &metav1.Time{Time: time.Now()}
	suspended := createJob(t, r, newTestJob())
	suspended.Spec.Suspend = ptr.To(true)
	indexed := newTestJob()
	indexed.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
	indexed.Spec.Completions, indexed.Spec.Parallelism = ptr.To[int32](3), ptr.To[int32](3)
	createJob(t, r, indexed)

	tests := []struct {
		name   string
		old    *batchv1.Job
		mutate func(j *batchv1.Job)
		want   []string
	}{
		{"parallelism", running, func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](4) }, nil},
		{"suspend", running, func(j *batchv1.Job) { j.Spec.Suspend = ptr.To(true) }, nil},
		{"completions", running, func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](2) }, []string{"spec.completions: FieldValueInvalid"}},
		{"selector", running, func(j *batchv1.Job) { j.Spec.Selector.MatchLabels["x"] = "y" }, []string{"spec.selector: FieldValueInvalid"}},
		{"template image", running, func(j *batchv1.Job) { j.Spec.Template.Spec.Containers[0].Image = "perl" }, []string{"spec.template: FieldValueInvalid"}},
		{"node selector of a running job", running, func(j *batchv1.Job) { j.Spec.Template.Spec.NodeSelector = map[string]string{"a": "b"} },
			[]string{"spec.template: FieldValueInvalid"}},
		{"node selector while suspended", suspended, func(j *batchv1.Job) { j.Spec.Template.Spec.NodeSelector = map[string]string{"a": "b"} }, nil},
		{"image while suspended", suspended, func(j *batchv1.Job) { j.Spec.Template.Spec.Containers[0].Image = "perl" }, []string{"spec.template: FieldValueInvalid"}},
		{"completion mode", running, func(j *batchv1.Job) { j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion) },
			[]string{"spec.completionMode: FieldValueInvalid"}},
		{"elastic indexed", indexed, func(j *batchv1.Job) { j.Spec.Completions, j.Spec.Parallelism = ptr.To[int32](5), ptr.To[int32](5) }, nil},
		{"indexed completions alone", indexed, func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](5) },
			[]string{"spec.completions: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.old.DeepCopy()
			tt.mutate(j)
			errs := r.ValidateUpdate(j, tt.old)
			checkErrors(t, errs, tt.want...)
			for _, e := range errs {
				if e.Field == "spec.template" && !hasMessage(errs, "spec.template", "field is immutable") {
					t.Errorf("message: %v", e)
				}
			}
		})
	}

	upd := running.DeepCopy()
	upd.Spec.Parallelism = ptr.To[int32](2)
	upd.Status = batchv1.JobStatus{}
	r.PrepareForUpdate(upd, running)
	if upd.Generation != 2 || upd.Status.StartTime == nil {
		t.Errorf("update: generation %d status %+v", upd.Generation, upd.Status)
	}
}

func TestJobRowAndFields(t *testing.T) {
	r := groupResource(t, "batch", "v1", "jobs")
	start := metav1.NewTime(time.Now().Add(-2 * time.Minute))
	done := metav1.NewTime(start.Add(45 * time.Second))
	cond := func(typ batchv1.JobConditionType, s corev1.ConditionStatus) []batchv1.JobCondition {
		return []batchv1.JobCondition{{Type: typ, Status: s}}
	}
	tests := []struct {
		name                  string
		mutate                func(j *batchv1.Job)
		status, done, elapsed string
	}{
		{"new", func(*batchv1.Job) {}, "Running", "0/1", ""},
		{"running", func(j *batchv1.Job) { j.Status.StartTime = &start }, "Running", "0/1", "2m"},
		{"complete", func(j *batchv1.Job) {
			j.Status = batchv1.JobStatus{StartTime: &start, CompletionTime: &done, Succeeded: 1, Conditions: cond(batchv1.JobComplete, corev1.ConditionTrue)}
		}, "Complete", "1/1", "45s"},
		{"failed", func(j *batchv1.Job) { j.Status.Conditions = cond(batchv1.JobFailed, corev1.ConditionTrue) }, "Failed", "0/1", ""},
		{"suspended", func(j *batchv1.Job) { j.Status.Conditions = cond(batchv1.JobSuspended, corev1.ConditionTrue) }, "Suspended", "0/1", ""},
		{"suspended false", func(j *batchv1.Job) { j.Status.Conditions = cond(batchv1.JobSuspended, corev1.ConditionFalse) }, "Running", "0/1", ""},
		{"terminating", func(j *batchv1.Job) { j.DeletionTimestamp = &start }, "Terminating", "0/1", ""},
		{"failure target", func(j *batchv1.Job) { j.Status.Conditions = cond(batchv1.JobFailureTarget, corev1.ConditionTrue) }, "FailureTarget", "0/1", ""},
		{"success criteria", func(j *batchv1.Job) { j.Status.Conditions = cond(batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue) }, "SuccessCriteriaMet", "0/1", ""},
		{"parallel", func(j *batchv1.Job) { j.Spec.Completions = nil; j.Spec.Parallelism = ptr.To[int32](3) }, "Running", "0/1 of 3", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := createJob(t, r, newTestJob())
			tt.mutate(j)
			row := r.Row(j)
			if len(row) != len(r.Columns) {
				t.Fatalf("%d cells for %d columns", len(row), len(r.Columns))
			}
			if row[1] != tt.status || row[2] != tt.done || row[3] != tt.elapsed {
				t.Errorf("row %v, want status %q completions %q duration %q", row, tt.status, tt.done, tt.elapsed)
			}
		})
	}
	j := createJob(t, r, newTestJob())
	j.Status.Succeeded = 2
	if f := r.Fields(j); f["status.successful"] != "2" {
		t.Errorf("fields %v", f)
	}
	if got := r.Row(j)[7]; got != "batch.kubernetes.io/controller-uid="+testJobUID {
		t.Errorf("selector cell %v", got)
	}
}

func newTestCronJob() *batchv1.CronJob {
	tmpl := testPodTemplate(nil)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
		Spec: batchv1.CronJobSpec{
			Schedule:    "*/5 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}},
		},
	}
}

func TestCronJob(t *testing.T) {
	r := groupResource(t, "batch", "v1", "cronjobs")
	cj := newTestCronJob()
	r.Default(cj)
	s := cj.Spec
	if s.ConcurrencyPolicy != batchv1.AllowConcurrent || *s.Suspend || *s.SuccessfulJobsHistoryLimit != 3 || *s.FailedJobsHistoryLimit != 1 {
		t.Errorf("defaults %+v", s)
	}
	// Job-level defaults are left to the Job the controller creates.
	if s.JobTemplate.Spec.BackoffLimit != nil || s.JobTemplate.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("job template %+v", s.JobTemplate.Spec)
	}

	tests := []struct {
		name   string
		mutate func(cj *batchv1.CronJob)
		want   []string
	}{
		{"valid", func(*batchv1.CronJob) {}, nil},
		{"descriptor", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "@hourly" }, nil},
		{"time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("Etc/UTC") }, nil},
		{"no schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "" }, []string{"spec.schedule: FieldValueRequired"}},
		{"bad schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "every minute" }, []string{"spec.schedule: FieldValueInvalid"}},
		{"TZ in schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "TZ=UTC 0 * * * *" }, []string{"spec.schedule: FieldValueInvalid"}},
		{"unknown time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("Mars/Olympus") }, []string{"spec.timeZone: FieldValueInvalid"}},
		{"local time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("Local") }, []string{"spec.timeZone: FieldValueInvalid"}},
		{"empty time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("") }, []string{"spec.timeZone: FieldValueInvalid"}},
		{"bad concurrency", func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = "Sometimes" }, []string{"spec.concurrencyPolicy: FieldValueNotSupported"}},
		{"restart always", func(cj *batchv1.CronJob) {
			cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		},
			[]string{"spec.jobTemplate.spec.template.spec.restartPolicy: FieldValueRequired"}},
		{"selector given", func(cj *batchv1.CronJob) {
			cj.Spec.JobTemplate.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}, []string{"spec.jobTemplate.spec.selector: FieldValueInvalid"}},
		{"negative history", func(cj *batchv1.CronJob) { cj.Spec.FailedJobsHistoryLimit = ptr.To[int32](-1) }, []string{"spec.failedJobsHistoryLimit: FieldValueInvalid"}},
		{"long name", func(cj *batchv1.CronJob) { cj.Name = "a23456789012345678901234567890123456789012345678901234" }, []string{"metadata.name: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cj := newTestCronJob()
			r.Default(cj)
			tt.mutate(cj)
			checkErrors(t, r.Validate(cj), tt.want...)
		})
	}
	if errs := r.Validate(func() *batchv1.CronJob {
		c := newTestCronJob()
		r.Default(c)
		c.Spec.Schedule = "*/0 * * * *"
		return c
	}()); !hasMessage(errs, "spec.schedule", "step of range should be a positive number") {
		t.Errorf("schedule message: %v", errs)
	}

	last := metav1.NewTime(time.Now().Add(-3 * time.Minute))
	cj.Spec.TimeZone = ptr.To("Etc/UTC")
	cj.Status = batchv1.CronJobStatus{Active: []corev1.ObjectReference{{Name: "hello-1"}}, LastScheduleTime: &last}
	want := sprint([]interface{}{"hello", "*/5 * * * *", "Etc/UTC", "False", int64(1), "3m", "<unknown>", "app,log", "nginx:1.25,busybox", "<none>"})
	if got := sprint(r.Row(cj)); got != want {
		t.Errorf("row %s, want %s", got, want)
	}
}
