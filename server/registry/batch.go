package registry

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/internal/cron"
)

// batch/v1: Jobs and CronJobs, after pkg/apis/batch/v1/defaults.go,
// pkg/apis/batch/validation and pkg/registry/batch/*/strategy.go.

var batchGV = schema.GroupVersion{Group: "batch", Version: "v1"}

// Labels the API server puts on a job's pod template when it generates the
// selector (batch.LegacyJobNameLabel etc. in Kubernetes).
const (
	jobNameLabel             = "batch.kubernetes.io/job-name"
	jobControllerUIDLabel    = "batch.kubernetes.io/controller-uid"
	legacyJobNameLabel       = "job-name"
	legacyControllerUIDLabel = "controller-uid"
)

// Limits of indexed jobs (pkg/apis/batch/validation).
const (
	maxParallelismForIndexedJob   = 100_000
	maxFailedIndexesForIndexedJob = 100_000
)

func batchResources() []*Resource {
	return []*Resource{jobsResource(), cronJobsResource()}
}

func jobsResource() *Resource {
	return &Resource{
		GroupVersion: batchGV,
		Name:         "jobs",
		Kind:         "Job",
		SingularName: "job",
		Namespaced:   true,
		Categories:   []string{"all"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &batchv1.Job{} },
		NewList:      func() runtime.Object { return &batchv1.JobList{} },
		Default:      func(obj runtime.Object) { defaultJob(obj.(*batchv1.Job)) },
		PrepareForCreate: func(obj runtime.Object) {
			job := obj.(*batchv1.Job)
			if !ptr.Deref(job.Spec.ManualSelector, false) {
				generateJobSelector(job)
			}
			job.Status = batchv1.JobStatus{}
			job.Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			job, oldJob := obj.(*batchv1.Job), old.(*batchv1.Job)
			job.Status = oldJob.Status
			bumpGeneration(job, oldJob, &job.Spec, &oldJob.Spec)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			job, oldJob := obj.(*batchv1.Job), old.(*batchv1.Job)
			job.Spec = oldJob.Spec
			job.Generation = oldJob.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateJob(obj.(*batchv1.Job)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateJobUpdate(obj.(*batchv1.Job), old.(*batchv1.Job))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Status", "string", "Status of the job.", 0),
			column("Completions", "string", batchv1.JobStatus{}.SwaggerDoc()["succeeded"], 0),
			column("Duration", "string", "Time required to complete the job.", 0),
			ageColumn(),
			containersColumn, imagesColumn,
			column("Selector", "string", batchv1.JobSpec{}.SwaggerDoc()["selector"], 1),
		},
		Row: func(obj runtime.Object) []interface{} { return jobRow(obj.(*batchv1.Job)) },
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.successful": strconv.Itoa(int(obj.(*batchv1.Job).Status.Succeeded))}
		},
	}
}

// defaultJob is SetDefaults_Job of batch/v1 plus the generated defaults of
// its pod template and pod failure policy.
func defaultJob(job *batchv1.Job) {
	spec := &job.Spec
	// A non-parallel job may leave both unset; then both are 1.
	if spec.Completions == nil && spec.Parallelism == nil {
		spec.Completions = ptr.To[int32](1)
		spec.Parallelism = ptr.To[int32](1)
	}
	if spec.Parallelism == nil {
		spec.Parallelism = ptr.To[int32](1)
	}
	if spec.BackoffLimit == nil {
		if spec.BackoffLimitPerIndex != nil {
			spec.BackoffLimit = ptr.To[int32](math.MaxInt32)
		} else {
			spec.BackoffLimit = ptr.To[int32](6)
		}
	}
	// Kubernetes assigns the template's label map itself, not a copy: the
	// labels the strategy generates on create (job-name, controller-uid)
	// therefore show on the Job too. Keep that observable behaviour.
	if spec.Template.Labels != nil && len(job.Labels) == 0 {
		job.Labels = spec.Template.Labels
	}
	if spec.CompletionMode == nil {
		spec.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
	}
	if spec.Suspend == nil {
		spec.Suspend = ptr.To(false)
	}
	if spec.PodReplacementPolicy == nil {
		if spec.PodFailurePolicy != nil {
			spec.PodReplacementPolicy = ptr.To(batchv1.Failed)
		} else {
			spec.PodReplacementPolicy = ptr.To(batchv1.TerminatingOrFailed)
		}
	}
	if spec.ManualSelector == nil {
		spec.ManualSelector = ptr.To(false)
	}
	defaultJobSpecNested(spec)
}

// defaultJobSpecNested defaults what is nested in a job spec, for Jobs and
// CronJob job templates alike.
func defaultJobSpecNested(spec *batchv1.JobSpec) {
	if p := spec.PodFailurePolicy; p != nil {
		for i := range p.Rules {
			for j := range p.Rules[i].OnPodConditions {
				if c := &p.Rules[i].OnPodConditions[j]; c.Status == "" {
					c.Status = corev1.ConditionTrue
				}
			}
		}
	}
	defaultPodTemplateSpec(&spec.Template)
}

// generateJobSelector is generateSelector of the job strategy: the pod
// template gets the job-name and controller-uid labels (legacy and
// prefixed) unless the user set them, and the selector matches the uid.
// The handler sets metadata.uid before PrepareForCreate runs.
func generateJobSelector(job *batchv1.Job) {
	t := &job.Spec.Template
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	for _, l := range []string{legacyJobNameLabel, jobNameLabel} {
		if _, ok := t.Labels[l]; !ok {
			t.Labels[l] = job.Name
		}
	}
	for _, l := range []string{legacyControllerUIDLabel, jobControllerUIDLabel} {
		if _, ok := t.Labels[l]; !ok {
			t.Labels[l] = string(job.UID)
		}
	}
	if job.Spec.Selector == nil {
		job.Spec.Selector = &metav1.LabelSelector{}
	}
	if job.Spec.Selector.MatchLabels == nil {
		job.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := job.Spec.Selector.MatchLabels[jobControllerUIDLabel]; !ok {
		job.Spec.Selector.MatchLabels[jobControllerUIDLabel] = string(job.UID)
	}
}

// validateJob is ValidateJob (with the prefixed labels required, as for
// every job this server created) plus the status rules that hold for any
// stored job.
func validateJob(job *batchv1.Job) field.ErrorList {
	allErrs := validateGeneratedJobSelector(job)
	allErrs = append(allErrs, validateJobSpecWithSelector(&job.Spec, field.NewPath("spec"))...)
	if ptr.Deref(job.Spec.CompletionMode, "") == batchv1.IndexedCompletion && ptr.Deref(job.Spec.Completions, 0) > 0 {
		// Indexed pods' hostnames are name-<index>; the last must be a DNS label.
		host := fmt.Sprintf("%s-%d", job.Name, *job.Spec.Completions-1)
		if len(validation.IsDNS1123Label(host)) > 0 {
			allErrs = append(allErrs, field.Invalid(field.NewPath("metadata", "name"), job.Name,
				fmt.Sprintf("will not able to create pod with invalid DNS label: %s", host)))
		}
	}
	return append(allErrs, validateJobStatus(&job.Status, field.NewPath("status"))...)
}

// validateGeneratedJobSelector checks that a generated selector and the
// template labels are what the server generated.
func validateGeneratedJobSelector(job *batchv1.Job) field.ErrorList {
	if ptr.Deref(job.Spec.ManualSelector, false) || job.Spec.Selector == nil {
		return nil
	}
	var allErrs field.ErrorList
	if job.UID == "" {
		allErrs = append(allErrs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	metaPath := field.NewPath("spec", "template", "metadata")
	expected := map[string]string{
		legacyControllerUIDLabel: string(job.UID),
		legacyJobNameLabel:       job.Name,
		jobControllerUIDLabel:    string(job.UID),
		jobNameLabel:             job.Name,
	}
	for _, l := range []string{legacyControllerUIDLabel, legacyJobNameLabel, jobControllerUIDLabel, jobNameLabel} {
		allErrs = append(allErrs, validateHasLabel(job.Spec.Template.Labels, metaPath, l, expected[l])...)
	}
	if sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector); err == nil && !sel.Matches(labels.Set(expected)) {
		allErrs = append(allErrs, field.Invalid(field.NewPath("spec", "selector"), job.Spec.Selector, "`selector` not auto-generated"))
	}
	return allErrs
}

// validateHasLabel is ValidateHasLabel of core validation.
func validateHasLabel(l map[string]string, metaPath *field.Path, key, value string) field.ErrorList {
	actual, ok := l[key]
	if !ok {
		return field.ErrorList{field.Required(metaPath.Child("labels").Key(key), "must be '"+value+"'")}
	}
	if actual != value {
		return field.ErrorList{field.Invalid(metaPath.Child("labels").Key(key), l, "must be '"+value+"'")}
	}
	return nil
}

// validateJobSpecWithSelector is ValidateJobSpec: the spec rules plus a
// required selector matching the template.
func validateJobSpecWithSelector(spec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	allErrs := validateJobSpec(spec, fldPath)
	if spec.Selector == nil {
		return append(allErrs, field.Required(fldPath.Child("selector"), ""))
	}
	allErrs = append(allErrs, metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, fldPath.Child("selector"))...)
	if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); err == nil && !sel.Matches(labels.Set(spec.Template.Labels)) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("template", "metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	return allErrs
}

// validateJobSpec is validateJobSpec of batch validation: the rules shared
// by Jobs and CronJob job templates.
func validateJobSpec(spec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for name, v := range map[string]*int32{
		"parallelism": spec.Parallelism, "completions": spec.Completions, "backoffLimit": spec.BackoffLimit,
		"ttlSecondsAfterFinished": spec.TTLSecondsAfterFinished, "backoffLimitPerIndex": spec.BackoffLimitPerIndex,
		"maxFailedIndexes": spec.MaxFailedIndexes,
	} {
		if v != nil {
			allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*v), fldPath.Child(name))...)
		}
	}
	if spec.ActiveDeadlineSeconds != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(*spec.ActiveDeadlineSeconds, fldPath.Child("activeDeadlineSeconds"))...)
	}
	if spec.MaxFailedIndexes != nil && spec.BackoffLimitPerIndex == nil {
		allErrs = append(allErrs, field.Required(fldPath.Child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
	}
	if spec.ManagedBy != nil {
		allErrs = append(allErrs, validation.IsDomainPrefixedPath(fldPath.Child("managedBy"), *spec.ManagedBy)...)
		if len(*spec.ManagedBy) > 63 {
			allErrs = append(allErrs, field.TooLong(fldPath.Child("managedBy"), "", 63))
		}
	}
	indexed := false
	if mode := spec.CompletionMode; mode != nil {
		switch *mode {
		case batchv1.NonIndexedCompletion:
		case batchv1.IndexedCompletion:
			indexed = true
			if spec.Completions == nil {
				allErrs = append(allErrs, field.Required(fldPath.Child("completions"), "when completion mode is Indexed"))
			}
			if p := ptr.Deref(spec.Parallelism, 0); p > maxParallelismForIndexedJob {
				allErrs = append(allErrs, field.Invalid(fldPath.Child("parallelism"), p,
					fmt.Sprintf("must be less than or equal to %d when completion mode is Indexed", maxParallelismForIndexedJob)))
			}
			if m := spec.MaxFailedIndexes; m != nil {
				if spec.Completions != nil && *m > *spec.Completions {
					allErrs = append(allErrs, field.Invalid(fldPath.Child("maxFailedIndexes"), *m, "must be less than or equal to completions"))
				}
				if *m > maxFailedIndexesForIndexedJob {
					allErrs = append(allErrs, field.Invalid(fldPath.Child("maxFailedIndexes"), *m, fmt.Sprintf("must be less than or equal to %d", maxFailedIndexesForIndexedJob)))
				}
			}
		default:
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("completionMode"), *mode,
				[]batchv1.CompletionMode{batchv1.NonIndexedCompletion, batchv1.IndexedCompletion}))
		}
	}
	if !indexed {
		if spec.BackoffLimitPerIndex != nil {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("backoffLimitPerIndex"), *spec.BackoffLimitPerIndex, "requires indexed completion mode"))
		}
		if spec.MaxFailedIndexes != nil {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("maxFailedIndexes"), *spec.MaxFailedIndexes, "requires indexed completion mode"))
		}
		if spec.SuccessPolicy != nil {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("successPolicy"), *spec.SuccessPolicy, "requires indexed completion mode"))
		}
	}
	if spec.PodFailurePolicy != nil {
		allErrs = append(allErrs, validatePodFailurePolicy(spec, fldPath.Child("podFailurePolicy"))...)
	}
	if p := spec.PodReplacementPolicy; p != nil {
		switch {
		case spec.PodFailurePolicy != nil && *p != batchv1.Failed:
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.Failed}))
		case spec.PodFailurePolicy == nil && *p != batchv1.Failed && *p != batchv1.TerminatingOrFailed:
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.Failed, batchv1.TerminatingOrFailed}))
		}
	}

	tmplPath := fldPath.Child("template")
	allErrs = append(allErrs, validatePodTemplateSpec(&spec.Template, tmplPath)...)
	rpPath := tmplPath.Child("spec", "restartPolicy")
	switch rp := spec.Template.Spec.RestartPolicy; {
	case rp == corev1.RestartPolicyAlways || rp == "":
		allErrs = append(allErrs, field.Required(rpPath, fmt.Sprintf("valid values: %q, %q", corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)))
	case rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever:
		allErrs = append(allErrs, field.NotSupported(rpPath, rp, []corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	case spec.PodFailurePolicy != nil && rp != corev1.RestartPolicyNever:
		allErrs = append(allErrs, field.Invalid(rpPath, rp, fmt.Sprintf("only %q is supported when podFailurePolicy is specified", corev1.RestartPolicyNever)))
	}
	return allErrs
}

// validatePodFailurePolicy checks the rules' shape: an action, and exactly
// one of onExitCodes and onPodConditions.
func validatePodFailurePolicy(spec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	rulesPath := fldPath.Child("rules")
	const maxRules = 20
	if n := len(spec.PodFailurePolicy.Rules); n > maxRules {
		allErrs = append(allErrs, field.TooMany(rulesPath, n, maxRules))
	}
	actions := []batchv1.PodFailurePolicyAction{batchv1.PodFailurePolicyActionCount, batchv1.PodFailurePolicyActionFailIndex,
		batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionIgnore}
	for i, rule := range spec.PodFailurePolicy.Rules {
		rulePath := rulesPath.Index(i)
		switch rule.Action {
		case "":
			allErrs = append(allErrs, field.Required(rulePath.Child("action"), fmt.Sprintf("valid values: %q", actions)))
		case batchv1.PodFailurePolicyActionFailIndex:
			if spec.BackoffLimitPerIndex == nil {
				allErrs = append(allErrs, field.Invalid(rulePath.Child("action"), rule.Action, "requires the backoffLimitPerIndex to be set"))
			}
		case batchv1.PodFailurePolicyActionCount, batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionIgnore:
		default:
			allErrs = append(allErrs, field.NotSupported(rulePath.Child("action"), rule.Action, actions))
		}
		if ec := rule.OnExitCodes; ec != nil {
			if ec.Operator != batchv1.PodFailurePolicyOnExitCodesOpIn && ec.Operator != batchv1.PodFailurePolicyOnExitCodesOpNotIn {
				allErrs = append(allErrs, field.NotSupported(rulePath.Child("onExitCodes", "operator"), ec.Operator,
					[]batchv1.PodFailurePolicyOnExitCodesOperator{batchv1.PodFailurePolicyOnExitCodesOpIn, batchv1.PodFailurePolicyOnExitCodesOpNotIn}))
			}
			if len(ec.Values) == 0 {
				allErrs = append(allErrs, field.Invalid(rulePath.Child("onExitCodes", "values"), ec.Values, "at least one value is required"))
			}
		}
		for j, c := range rule.OnPodConditions {
			cPath := rulePath.Child("onPodConditions").Index(j)
			allErrs = append(allErrs, metav1validation.ValidateLabelName(string(c.Type), cPath.Child("type"))...)
			if c.Status != corev1.ConditionTrue && c.Status != corev1.ConditionFalse && c.Status != corev1.ConditionUnknown {
				allErrs = append(allErrs, field.NotSupported(cPath.Child("status"), c.Status,
					[]corev1.ConditionStatus{corev1.ConditionFalse, corev1.ConditionTrue, corev1.ConditionUnknown}))
			}
		}
		hasCodes, hasConditions := rule.OnExitCodes != nil, len(rule.OnPodConditions) > 0
		if hasCodes && hasConditions {
			allErrs = append(allErrs, field.Invalid(rulePath, field.OmitValueType{}, "specifying both OnExitCodes and OnPodConditions is not supported"))
		}
		if !hasCodes && !hasConditions {
			allErrs = append(allErrs, field.Invalid(rulePath, field.OmitValueType{}, "specifying one of OnExitCodes and OnPodConditions is required"))
		}
	}
	return allErrs
}

func validateJobStatus(st *batchv1.JobStatus, fldPath *field.Path) field.ErrorList {
	allErrs := validateNonnegativeFields(fldPath, map[string]int64{
		"active":    int64(st.Active),
		"succeeded": int64(st.Succeeded),
		"failed":    int64(st.Failed),
	})
	if st.Ready != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*st.Ready), fldPath.Child("ready"))...)
	}
	if st.Terminating != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*st.Terminating), fldPath.Child("terminating"))...)
	}
	if st.StartTime != nil && st.CompletionTime != nil && st.CompletionTime.Before(st.StartTime) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("completionTime"), st.CompletionTime, "completionTime cannot be set before startTime"))
	}
	return allErrs
}

// validateJobUpdate is ValidateJobSpecUpdate: most of the spec is fixed
// once the job exists. Scheduling directives of the pod template may change
// while the job is suspended and has never started.
func validateJobUpdate(job, old *batchv1.Job) field.ErrorList {
	fldPath := field.NewPath("spec")
	spec, oldSpec := &job.Spec, &old.Spec
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateJobCompletionsUpdate(spec, oldSpec, fldPath.Child("completions"))...)
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(spec.Selector, oldSpec.Selector, fldPath.Child("selector"))...)

	oldTemplate := &oldSpec.Template
	if ptr.Deref(oldSpec.Suspend, false) && old.Status.StartTime == nil {
		t := &spec.Template
		oldTemplate = oldTemplate.DeepCopy()
		switch {
		case t.Spec.Affinity == nil && oldTemplate.Spec.Affinity != nil:
			// Clearing the affinity is allowed if only node affinity was set.
			oldTemplate.Spec.Affinity.NodeAffinity = nil
			if *oldTemplate.Spec.Affinity == (corev1.Affinity{}) {
				oldTemplate.Spec.Affinity = nil
			}
		case t.Spec.Affinity != nil && oldTemplate.Spec.Affinity == nil:
			oldTemplate.Spec.Affinity = &corev1.Affinity{NodeAffinity: t.Spec.Affinity.NodeAffinity}
		case t.Spec.Affinity != nil && oldTemplate.Spec.Affinity != nil:
			oldTemplate.Spec.Affinity.NodeAffinity = t.Spec.Affinity.NodeAffinity
		}
		oldTemplate.Spec.NodeSelector = t.Spec.NodeSelector
		oldTemplate.Spec.Tolerations = t.Spec.Tolerations
		oldTemplate.Spec.SchedulingGates = t.Spec.SchedulingGates
		oldTemplate.Annotations = t.Annotations
		oldTemplate.Labels = t.Labels
	}
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(&spec.Template, oldTemplate, fldPath.Child("template"))...)
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(spec.CompletionMode, oldSpec.CompletionMode, fldPath.Child("completionMode"))...)
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(spec.PodFailurePolicy, oldSpec.PodFailurePolicy, fldPath.Child("podFailurePolicy"))...)
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(spec.BackoffLimitPerIndex, oldSpec.BackoffLimitPerIndex, fldPath.Child("backoffLimitPerIndex"))...)
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(spec.ManagedBy, oldSpec.ManagedBy, fldPath.Child("managedBy"))...)
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(spec.SuccessPolicy, oldSpec.SuccessPolicy, fldPath.Child("successPolicy"))...)
	return allErrs
}

// validateJobCompletionsUpdate: completions are immutable, except that an
// indexed job may change them together with parallelism (elastic indexed
// jobs).
func validateJobCompletionsUpdate(spec, oldSpec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	if ptr.Deref(spec.CompletionMode, "") != batchv1.IndexedCompletion {
		return apivalidation.ValidateImmutableField(spec.Completions, oldSpec.Completions, fldPath)
	}
	if apiequality.Semantic.DeepEqual(spec.Completions, oldSpec.Completions) || spec.Completions == nil {
		return nil
	}
	if *spec.Completions != ptr.Deref(spec.Parallelism, 0) {
		return field.ErrorList{field.Invalid(fldPath, spec.Completions, "can only be modified in tandem with spec.parallelism")}
	}
	return nil
}

func jobRow(job *batchv1.Job) []interface{} {
	var completions string
	switch {
	case job.Spec.Completions != nil:
		completions = fmt.Sprintf("%d/%d", job.Status.Succeeded, *job.Spec.Completions)
	case ptr.Deref(job.Spec.Parallelism, 0) > 1:
		completions = fmt.Sprintf("%d/1 of %d", job.Status.Succeeded, *job.Spec.Parallelism)
	default:
		completions = fmt.Sprintf("%d/1", job.Status.Succeeded)
	}
	var took string
	switch st := &job.Status; {
	case st.StartTime == nil:
	case st.CompletionTime == nil:
		took = duration.HumanDuration(time.Since(st.StartTime.Time))
	default:
		took = duration.HumanDuration(st.CompletionTime.Sub(st.StartTime.Time))
	}
	names, images := podTemplateContainerCells(job.Spec.Template.Spec.Containers)
	return []interface{}{
		job.Name, jobStatusCell(job), completions, took, translateTimestampSince(job.CreationTimestamp),
		names, images, formatLabelSelector(job.Spec.Selector),
	}
}

// jobStatusCell is the STATUS column of kubectl 1.33's job printer.
func jobStatusCell(job *batchv1.Job) string {
	has := func(t batchv1.JobConditionType) bool {
		for _, c := range job.Status.Conditions {
			if c.Type == t {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	switch {
	case has(batchv1.JobComplete):
		return "Complete"
	case has(batchv1.JobFailed):
		return "Failed"
	case job.DeletionTimestamp != nil:
		return "Terminating"
	case has(batchv1.JobSuspended):
		return "Suspended"
	case has(batchv1.JobFailureTarget):
		return "FailureTarget"
	case has(batchv1.JobSuccessCriteriaMet):
		return "SuccessCriteriaMet"
	}
	return "Running"
}

func cronJobsResource() *Resource {
	return &Resource{
		GroupVersion: batchGV,
		Name:         "cronjobs",
		Kind:         "CronJob",
		SingularName: "cronjob",
		Namespaced:   true,
		ShortNames:   []string{"cj"},
		Categories:   []string{"all"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &batchv1.CronJob{} },
		NewList:      func() runtime.Object { return &batchv1.CronJobList{} },
		Default:      func(obj runtime.Object) { defaultCronJob(obj.(*batchv1.CronJob)) },
		PrepareForCreate: func(obj runtime.Object) {
			cj := obj.(*batchv1.CronJob)
			cj.Status = batchv1.CronJobStatus{}
			cj.Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			cj, oldCJ := obj.(*batchv1.CronJob), old.(*batchv1.CronJob)
			cj.Status = oldCJ.Status
			bumpGeneration(cj, oldCJ, &cj.Spec, &oldCJ.Spec)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			cj, oldCJ := obj.(*batchv1.CronJob), old.(*batchv1.CronJob)
			cj.Spec = oldCJ.Spec
			cj.Generation = oldCJ.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateCronJob(obj.(*batchv1.CronJob)) },
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Schedule", "string", batchv1.CronJobSpec{}.SwaggerDoc()["schedule"], 0),
			column("Timezone", "string", batchv1.CronJobSpec{}.SwaggerDoc()["timeZone"], 0),
			column("Suspend", "boolean", batchv1.CronJobSpec{}.SwaggerDoc()["suspend"], 0),
			column("Active", "integer", batchv1.CronJobStatus{}.SwaggerDoc()["active"], 0),
			column("Last Schedule", "string", batchv1.CronJobStatus{}.SwaggerDoc()["lastScheduleTime"], 0),
			ageColumn(),
			containersColumn, imagesColumn,
			column("Selector", "string", batchv1.JobSpec{}.SwaggerDoc()["selector"], 1),
		},
		Row: func(obj runtime.Object) []interface{} { return cronJobRow(obj.(*batchv1.CronJob)) },
	}
}

// defaultCronJob is SetDefaults_CronJob plus the generated defaults of the
// job template (its pod template; Job-level defaults such as backoffLimit
// apply only when the controller creates the Job).
func defaultCronJob(cj *batchv1.CronJob) {
	spec := &cj.Spec
	if spec.ConcurrencyPolicy == "" {
		spec.ConcurrencyPolicy = batchv1.AllowConcurrent
	}
	if spec.Suspend == nil {
		spec.Suspend = ptr.To(false)
	}
	if spec.SuccessfulJobsHistoryLimit == nil {
		spec.SuccessfulJobsHistoryLimit = ptr.To[int32](3)
	}
	if spec.FailedJobsHistoryLimit == nil {
		spec.FailedJobsHistoryLimit = ptr.To[int32](1)
	}
	defaultJobSpecNested(&spec.JobTemplate.Spec)
}

// validateCronJob is ValidateCronJobCreate. Kubernetes lets an update keep
// a TZ= schedule and a long name that older servers accepted; this server
// never stored such objects, so the create rules hold for updates too.
func validateCronJob(cj *batchv1.CronJob) field.ErrorList {
	var allErrs field.ErrorList
	if len(cj.Name) > validation.DNS1035LabelMaxLength-11 {
		// Jobs are named <cronjob>-<11 characters of schedule time>.
		allErrs = append(allErrs, field.Invalid(field.NewPath("metadata", "name"), cj.Name, "must be no more than 52 characters"))
	}
	specPath := field.NewPath("spec")
	spec := &cj.Spec
	schedPath := specPath.Child("schedule")
	if spec.Schedule == "" {
		allErrs = append(allErrs, field.Required(schedPath, ""))
	} else {
		if _, err := cron.Parse(spec.Schedule); err != nil {
			allErrs = append(allErrs, field.Invalid(schedPath, spec.Schedule, err.Error()))
		}
		if strings.Contains(spec.Schedule, "TZ") {
			allErrs = append(allErrs, field.Invalid(schedPath, spec.Schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
		}
	}
	if spec.StartingDeadlineSeconds != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(*spec.StartingDeadlineSeconds, specPath.Child("startingDeadlineSeconds"))...)
	}
	allErrs = append(allErrs, validateTimeZone(spec.TimeZone, specPath.Child("timeZone"))...)
	cpPath := specPath.Child("concurrencyPolicy")
	switch spec.ConcurrencyPolicy {
	case "":
		allErrs = append(allErrs, field.Required(cpPath, ""))
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	default:
		allErrs = append(allErrs, field.NotSupported(cpPath, spec.ConcurrencyPolicy,
			[]batchv1.ConcurrencyPolicy{batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent}))
	}
	jtPath := specPath.Child("jobTemplate")
	allErrs = append(allErrs, metav1validation.ValidateLabels(spec.JobTemplate.Labels, jtPath.Child("metadata", "labels"))...)
	allErrs = append(allErrs, apivalidation.ValidateAnnotations(spec.JobTemplate.Annotations, jtPath.Child("metadata", "annotations"))...)
	allErrs = append(allErrs, validateJobSpec(&spec.JobTemplate.Spec, jtPath.Child("spec"))...)
	if spec.JobTemplate.Spec.Selector != nil {
		allErrs = append(allErrs, field.Invalid(jtPath.Child("spec", "selector"), spec.JobTemplate.Spec.Selector, "`selector` will be auto-generated"))
	}
	if ptr.Deref(spec.JobTemplate.Spec.ManualSelector, false) {
		allErrs = append(allErrs, field.NotSupported(jtPath.Child("spec", "manualSelector"), spec.JobTemplate.Spec.ManualSelector, []string{"nil", "false"}))
	}
	for name, v := range map[string]*int32{"successfulJobsHistoryLimit": spec.SuccessfulJobsHistoryLimit, "failedJobsHistoryLimit": spec.FailedJobsHistoryLimit} {
		if v != nil {
			allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*v), specPath.Child(name))...)
		}
	}
	return allErrs
}

var validTimeZoneCharacters = regexp.MustCompile(`^[A-Za-z\.\-_0-9+]{1,14}$`)

// validateTimeZone is validateTimeZone of batch validation: an explicit
// IANA zone name this machine's time zone database knows.
func validateTimeZone(tz *string, fldPath *field.Path) field.ErrorList {
	if tz == nil {
		return nil
	}
	if *tz == "" {
		return field.ErrorList{field.Invalid(fldPath, tz, "timeZone must be nil or non-empty string")}
	}
	for _, part := range strings.Split(*tz, "/") {
		if part == "." || part == ".." || strings.HasPrefix(part, "-") || !validTimeZoneCharacters.MatchString(part) {
			return field.ErrorList{field.Invalid(fldPath, tz, fmt.Sprintf("unknown time zone %s", *tz))}
		}
	}
	var allErrs field.ErrorList
	if strings.EqualFold(*tz, "Local") {
		allErrs = append(allErrs, field.Invalid(fldPath, tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
	}
	if _, err := time.LoadLocation(*tz); err != nil {
		allErrs = append(allErrs, field.Invalid(fldPath, tz, err.Error()))
	}
	return allErrs
}

func cronJobRow(cj *batchv1.CronJob) []interface{} {
	last := "<none>"
	if cj.Status.LastScheduleTime != nil {
		last = translateTimestampSince(*cj.Status.LastScheduleTime)
	}
	tz := "<none>"
	if cj.Spec.TimeZone != nil {
		tz = *cj.Spec.TimeZone
	}
	suspend := "<unset>"
	if cj.Spec.Suspend != nil {
		suspend = "False"
		if *cj.Spec.Suspend {
			suspend = "True"
		}
	}
	names, images := podTemplateContainerCells(cj.Spec.JobTemplate.Spec.Template.Spec.Containers)
	return []interface{}{
		cj.Name, cj.Spec.Schedule, tz, suspend, int64(len(cj.Status.Active)), last,
		translateTimestampSince(cj.CreationTimestamp),
		names, images, formatLabelSelector(cj.Spec.JobTemplate.Spec.Selector),
	}
}
