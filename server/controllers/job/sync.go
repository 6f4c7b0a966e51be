package job

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/queue"
)

// Condition reasons and messages of Kubernetes' job controller.
const (
	reasonCompletionsReached = "CompletionsReached"
	msgCompletionsReached    = "Reached expected number of succeeded pods"
	reasonBackoffLimit       = "BackoffLimitExceeded"
	msgBackoffLimit          = "Job has reached the specified backoff limit"
	reasonDeadline           = "DeadlineExceeded"
	msgDeadline              = "Job was active longer than specified deadline"
	reasonPodFailurePolicy   = "PodFailurePolicy"
)

// maxPodWritesPerSync bounds the pods created or deleted in one reconcile,
// so that one huge Job does not hold a worker for long.
const maxPodWritesPerSync = 500

// podCounts classifies a job's unfinished pods.
type podCounts struct {
	all         []*corev1.Pod // every pod of the job the reconcile sees
	active      []*corev1.Pod // running or pending, not being deleted
	terminating int           // not finished, being deleted
}

func classify(pods []*corev1.Pod) podCounts {
	pc := podCounts{all: pods}
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if pod.DeletionTimestamp != nil {
			pc.terminating++
			continue
		}
		pc.active = append(pc.active, pod)
	}
	return pc
}

// sync reconciles an unfinished Job: count finished pods, decide whether
// the Job succeeded or failed, create or delete pods, write the status.
func (c *Controller) sync(ctx context.Context, key string, job *batchv1.Job, v podView) error {
	now := c.now()
	job, err := c.trackFinished(ctx, key, job, v, now)
	if err != nil {
		return err
	}
	// The finalizers of uncounted pods are gone: move them into the counts.
	status := job.Status.DeepCopy()
	if u := status.UncountedTerminatedPods; u != nil {
		status.Failed += int32(len(u.Failed))
		if !isIndexed(job) {
			status.Succeeded += int32(len(u.Succeeded))
		}
	}
	status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}

	pc := classify(v.pods)
	suspended := job.Spec.Suspend != nil && *job.Spec.Suspend
	var requeue time.Duration
	addRequeue := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}

	if !suspended {
		if status.StartTime == nil {
			status.StartTime = &metav1.Time{Time: now}
		}
		if failure := conditionTrue(status.Conditions, batchv1.JobFailureTarget); failure == nil &&
			conditionTrue(status.Conditions, batchv1.JobSuccessCriteriaMet) == nil {
			switch {
			case status.Failed > backoffLimit(job) || pastBackoffLimitOnFailure(job, pc.active):
				setCondition(status, batchv1.JobFailureTarget, corev1.ConditionTrue, reasonBackoffLimit, msgBackoffLimit, now)
			case pastDeadline(job, status, now):
				setCondition(status, batchv1.JobFailureTarget, corev1.ConditionTrue, reasonDeadline, msgDeadline, now)
			case succeeded(job, status, len(pc.active)):
				setCondition(status, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, reasonCompletionsReached, msgCompletionsReached, now)
			default:
				if job.Spec.ActiveDeadlineSeconds != nil {
					addRequeue(status.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second).Sub(now) + time.Millisecond)
				}
			}
		}
	}

	failure := conditionTrue(status.Conditions, batchv1.JobFailureTarget)
	success := conditionTrue(status.Conditions, batchv1.JobSuccessCriteriaMet)
	switch {
	case failure != nil || success != nil:
		// Kubernetes keeps the finalizers of pods it deletes here: they are
		// counted (as failed) once terminating, before the Job finishes.
		deleted, err := c.deletePods(ctx, key, job, pc.active, false)
		pc.terminating += deleted
		pc.active = pc.active[deleted:]
		if err != nil {
			c.writeStatus(ctx, job, status, pc)
			return err
		}
		if len(pc.active) == 0 && pc.terminating == 0 {
			c.finish(job, status, failure, now)
		}
	case suspended:
		if setCondition(status, batchv1.JobSuspended, corev1.ConditionTrue, "JobSuspended", "Job suspended", now) {
			c.recorder.Eventf(job, corev1.EventTypeNormal, "Suspended", "Job suspended")
		}
		deleted, err := c.deletePods(ctx, key, job, pc.active, true)
		pc.active = pc.active[deleted:]
		if err != nil {
			c.writeStatus(ctx, job, status, pc)
			return err
		}
	default:
		if setCondition(status, batchv1.JobSuspended, corev1.ConditionFalse, "JobResumed", "Job resumed", now) {
			c.recorder.Eventf(job, corev1.EventTypeNormal, "Resumed", "Job resumed")
			// activeDeadlineSeconds counts the time the Job is not suspended.
			status.StartTime = &metav1.Time{Time: now}
		}
		if v.satisfied {
			d, err := c.manage(ctx, key, job, status, &pc, now)
			if err != nil {
				c.writeStatus(ctx, job, status, pc)
				return err
			}
			addRequeue(d)
		}
	}
	if err := c.writeStatus(ctx, job, status, pc); err != nil {
		return err
	}
	if requeue > 0 {
		return queue.RequeueAfter(requeue)
	}
	return nil
}

// writeStatus fills in the pod counts and writes status if it changed.
func (c *Controller) writeStatus(ctx context.Context, job *batchv1.Job, status *batchv1.JobStatus, pc podCounts) error {
	status.Active = int32(len(pc.active))
	var ready int32
	for _, pod := range pc.active {
		if podReady(pod) {
			ready++
		}
	}
	status.Ready = &ready
	terminating := int32(pc.terminating)
	status.Terminating = &terminating
	if apiequality.Semantic.DeepEqual(&job.Status, status) {
		return nil
	}
	updated := job.DeepCopy()
	updated.Status = *status
	if _, err := c.updateStatus(ctx, updated); err != nil {
		return err
	}
	return nil
}

func (c *Controller) updateStatus(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	obj, err := c.api.Update(ctx, jobsGVR, job, "status", c.opts.FieldManager)
	if err != nil {
		return nil, fmt.Errorf("update status of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	out, ok := obj.(*batchv1.Job)
	if !ok {
		return nil, fmt.Errorf("update status of job %s/%s: unexpected type %T", job.Namespace, job.Name, obj)
	}
	return out, nil
}

// finish sets the terminal condition once the Job's pods are gone:
// Failed after FailureTarget, Complete (with completionTime) after
// SuccessCriteriaMet.
func (c *Controller) finish(job *batchv1.Job, status *batchv1.JobStatus, failure *batchv1.JobCondition, now time.Time) {
	if failure != nil {
		setCondition(status, batchv1.JobFailed, corev1.ConditionTrue, failure.Reason, failure.Message, now)
		c.recorder.Eventf(job, corev1.EventTypeWarning, failure.Reason, "%s", failure.Message)
		return
	}
	setCondition(status, batchv1.JobComplete, corev1.ConditionTrue, reasonCompletionsReached, msgCompletionsReached, now)
	status.CompletionTime = &metav1.Time{Time: now}
	c.recorder.Eventf(job, corev1.EventTypeNormal, "Completed", "Job completed")
}

// trackFinished records newly finished pods in
// status.uncountedTerminatedPods, then removes the tracking finalizer from
// every pod recorded there. It returns the Job as written.
func (c *Controller) trackFinished(ctx context.Context, key string, job *batchv1.Job, v podView, now time.Time) (*batchv1.Job, error) {
	uncounted := map[types.UID]bool{}
	if u := job.Status.UncountedTerminatedPods; u != nil {
		for _, uid := range slices.Concat(u.Succeeded, u.Failed) {
			uncounted[uid] = true
		}
	}
	indexed := isIndexed(job)
	completions := completionsOf(job)
	var newSucceeded, newFailed, release []*corev1.Pod
	failJob := ""
	for _, pod := range v.pods {
		if !hasFinalizer(pod) || uncounted[pod.UID] || v.counted(pod) {
			continue
		}
		switch {
		case pod.Status.Phase == corev1.PodSucceeded:
			if indexed {
				if i := podIndex(pod); i < 0 || i >= completions {
					release = append(release, pod)
					continue
				}
			}
			newSucceeded = append(newSucceeded, pod)
		case isPodFailed(pod, job):
			action, msg := matchFailurePolicy(job.Spec.PodFailurePolicy, pod)
			if action != nil && *action == batchv1.PodFailurePolicyActionIgnore {
				release = append(release, pod)
				continue
			}
			if action != nil && *action == batchv1.PodFailurePolicyActionFailJob && failJob == "" {
				failJob = msg
			}
			newFailed = append(newFailed, pod)
		}
	}

	if len(newSucceeded)+len(newFailed) > 0 {
		updated := job.DeepCopy()
		st := &updated.Status
		if st.UncountedTerminatedPods == nil {
			st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
		}
		var done indexSet
		if indexed {
			done = parseIndexes(st.CompletedIndexes, completions)
		}
		for _, pod := range newSucceeded {
			st.UncountedTerminatedPods.Succeeded = append(st.UncountedTerminatedPods.Succeeded, pod.UID)
			if indexed {
				// The index is recorded now: the pod may be gone by the
				// time the uncounted uids are flushed.
				done = done.with(podIndex(pod))
			}
		}
		if indexed {
			st.CompletedIndexes = done.String()
			st.Succeeded = int32(len(done))
		}
		for _, pod := range newFailed {
			st.UncountedTerminatedPods.Failed = append(st.UncountedTerminatedPods.Failed, pod.UID)
		}
		if failJob != "" && conditionTrue(st.Conditions, batchv1.JobFailureTarget) == nil {
			setCondition(st, batchv1.JobFailureTarget, corev1.ConditionTrue, reasonPodFailurePolicy, failJob, now)
		}
		written, err := c.updateStatus(ctx, updated)
		if err != nil {
			return nil, err
		}
		job = written
		c.recordBackoff(job.UID, newSucceeded, newFailed, now)
		for _, pod := range slices.Concat(newSucceeded, newFailed) {
			uncounted[pod.UID] = true
		}
	}

	for _, pod := range v.pods {
		if !uncounted[pod.UID] || !hasFinalizer(pod) || v.counted(pod) {
			continue
		}
		release = append(release, pod)
	}
	for _, pod := range release {
		if err := c.release(ctx, key, pod); err != nil {
			return nil, err
		}
	}
	return job, nil
}

// recordBackoff updates the Job's failures since its last success.
func (c *Controller) recordBackoff(uid types.UID, succeededPods, failedPods []*corev1.Pod, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.backoff[uid]
	var lastSuccess time.Time
	for _, pod := range succeededPods {
		if t := podFinishTime(pod, now); t.After(lastSuccess) {
			lastSuccess = t
		}
	}
	if !lastSuccess.IsZero() {
		rec = backoffRecord{}
	}
	for _, pod := range failedPods {
		t := podFinishTime(pod, now)
		if !lastSuccess.IsZero() && t.Before(lastSuccess) {
			continue
		}
		rec.failures++
		if t.After(rec.lastFailure) {
			rec.lastFailure = t
		}
	}
	c.backoff[uid] = rec
}

// backoffWait is how long the Job must still wait before creating pods.
func (c *Controller) backoffWait(uid types.UID, now time.Time) time.Duration {
	c.mu.Lock()
	rec := c.backoff[uid]
	c.mu.Unlock()
	if rec.failures == 0 {
		return 0
	}
	return rec.lastFailure.Add(rec.delay()).Sub(now)
}

// manage creates and deletes pods so that the right number run; it
// returns when to look again (back-off), if at all.
func (c *Controller) manage(ctx context.Context, key string, job *batchv1.Job, status *batchv1.JobStatus, pc *podCounts, now time.Time) (time.Duration, error) {
	parallelism := 1
	if job.Spec.Parallelism != nil {
		parallelism = int(*job.Spec.Parallelism)
	}
	// With podReplacementPolicy Failed a replacement waits until the pod
	// it replaces has failed.
	busy := len(pc.active)
	if onlyReplaceFailedPods(job) {
		busy += pc.terminating
	}

	var excess []*corev1.Pod
	var missing []int // indexes to create; -1 for NonIndexed pods
	if isIndexed(job) {
		excess, missing = indexedPlan(job, status, pc, parallelism)
		busy -= len(excess)
	} else {
		want := parallelism
		switch {
		case job.Spec.Completions != nil:
			want = min(parallelism, max(0, int(*job.Spec.Completions-status.Succeeded)))
		case status.Succeeded > 0:
			// A work queue Job creates no pod after its first success.
			want = min(len(pc.active), parallelism)
		}
		if n := len(pc.active) - want; n > 0 {
			excess = deletionOrder(pc.active)[:n]
			busy -= n
		}
		for range max(0, want-busy) {
			missing = append(missing, -1)
		}
	}

	if len(excess) > 0 {
		deleted, err := c.deletePods(ctx, key, job, excess, true)
		pc.active = slices.DeleteFunc(pc.active, func(p *corev1.Pod) bool { return slices.Contains(excess[:deleted], p) })
		if err != nil {
			return 0, err
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	if wait := c.backoffWait(job.UID, now); wait > 0 {
		return wait, nil
	}
	for _, index := range missing[:min(len(missing), maxPodWritesPerSync)] {
		pod, err := c.createPod(ctx, key, job, index)
		if err != nil {
			return 0, err
		}
		if pod != nil {
			pc.active = append(pc.active, pod)
		}
	}
	return 0, nil
}

// indexedPlan returns the active pods of an Indexed Job to delete (bad or
// completed indexes, duplicates, beyond parallelism) and the indexes to
// create, lowest first.
func indexedPlan(job *batchv1.Job, status *batchv1.JobStatus, pc *podCounts, parallelism int) ([]*corev1.Pod, []int) {
	completions := completionsOf(job)
	done := parseIndexes(status.CompletedIndexes, completions)
	var excess []*corev1.Pod
	byIndex := map[int]*corev1.Pod{}
	for _, pod := range deletionOrder(pc.active) {
		i := podIndex(pod)
		switch {
		case i < 0 || i >= completions || done.has(i):
			excess = append(excess, pod)
		case byIndex[i] != nil:
			// Keep the pod deletionOrder ranks last (ready, oldest).
			excess = append(excess, byIndex[i])
			byIndex[i] = pod
		default:
			byIndex[i] = pod
		}
	}
	want := min(parallelism, completions-len(done))
	if n := len(byIndex) - want; n > 0 {
		// Scale down from the highest index.
		kept := make([]int, 0, len(byIndex))
		for i := range byIndex {
			kept = append(kept, i)
		}
		slices.Sort(kept)
		for _, i := range kept[len(kept)-n:] {
			excess = append(excess, byIndex[i])
			delete(byIndex, i)
		}
	}
	busy := len(byIndex)
	if onlyReplaceFailedPods(job) {
		// Indexes held by terminating pods are not replaced yet.
		for _, pod := range pc.all {
			if i := podIndex(pod); pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodFailed && pod.Status.Phase != corev1.PodSucceeded && i >= 0 && byIndex[i] == nil {
				byIndex[i] = pod
				busy++
			}
		}
	}
	var missing []int
	for i := 0; i < completions && busy+len(missing) < want; i++ {
		if !done.has(i) && byIndex[i] == nil {
			missing = append(missing, i)
		}
	}
	return excess, missing
}

// deletionOrder sorts pods the way Kubernetes prefers to delete them:
// unscheduled before scheduled, pending before running, not ready before
// ready, newer before older.
func deletionOrder(pods []*corev1.Pod) []*corev1.Pod {
	out := slices.Clone(pods)
	rank := func(p *corev1.Pod) int {
		r := 0
		if p.Spec.NodeName != "" {
			r += 4
		}
		if p.Status.Phase == corev1.PodRunning {
			r += 2
		}
		if podReady(p) {
			r++
		}
		return r
	}
	slices.SortStableFunc(out, func(a, b *corev1.Pod) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
	})
	return out
}

// deletePods deletes pods (in order) and reports how many went. With
// release the tracking finalizer is removed first so that the pods are not
// counted as failures (suspension, scale-down).
func (c *Controller) deletePods(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod, release bool) (int, error) {
	for i, pod := range pods[:min(len(pods), maxPodWritesPerSync)] {
		if release && hasFinalizer(pod) {
			if err := c.release(ctx, key, pod); err != nil {
				return i, err
			}
		}
		c.expect.ExpectDelete(key, string(pod.UID), c.now())
		_, err := c.api.Delete(ctx, podsGVR, pod.Namespace, pod.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !isNotFoundOrConflict(err) {
			c.expect.ObserveDelete(key, string(pod.UID))
			c.recorder.Eventf(job, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			return i, fmt.Errorf("delete pod %s/%s of job %s: %w", pod.Namespace, pod.Name, key, err)
		}
		c.recorder.Eventf(job, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", pod.Name)
	}
	return min(len(pods), maxPodWritesPerSync), nil
}

// Helpers on the Job's spec and status.

func isIndexed(job *batchv1.Job) bool {
	return job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion
}

func completionsOf(job *batchv1.Job) int {
	if job.Spec.Completions == nil {
		return 0
	}
	return int(*job.Spec.Completions)
}

// backoffLimit defaults to 6, as the API server defaults it.
func backoffLimit(job *batchv1.Job) int32 {
	if job.Spec.BackoffLimit == nil {
		return 6
	}
	return *job.Spec.BackoffLimit
}

// onlyReplaceFailedPods: podReplacementPolicy Failed, the default when a
// podFailurePolicy is set.
func onlyReplaceFailedPods(job *batchv1.Job) bool {
	if p := job.Spec.PodReplacementPolicy; p != nil {
		return *p == batchv1.Failed
	}
	return job.Spec.PodFailurePolicy != nil
}

// isPodFailed counts failed pods and, unless only failed pods are replaced,
// pods being deleted before they succeeded (they may never reach Failed).
// A pod deleted before it was scheduled never runs: it is failed either way.
func isPodFailed(pod *corev1.Pod, job *batchv1.Job) bool {
	if pod.Status.Phase == corev1.PodFailed {
		return true
	}
	if pod.DeletionTimestamp == nil || pod.Status.Phase == corev1.PodSucceeded {
		return false
	}
	return !onlyReplaceFailedPods(job) || pod.Spec.NodeName == ""
}

// pastBackoffLimitOnFailure: with restartPolicy OnFailure, container
// restarts of active pods count against backoffLimit.
func pastBackoffLimitOnFailure(job *batchv1.Job, active []*corev1.Pod) bool {
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		return false
	}
	var restarts int32
	for _, pod := range active {
		if pod.Status.Phase != corev1.PodRunning && pod.Status.Phase != corev1.PodPending {
			continue
		}
		for _, st := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
			restarts += st.RestartCount
		}
	}
	if limit := backoffLimit(job); limit > 0 {
		return restarts >= limit
	}
	return restarts > 0
}

func pastDeadline(job *batchv1.Job, status *batchv1.JobStatus, now time.Time) bool {
	if job.Spec.ActiveDeadlineSeconds == nil || status.StartTime == nil {
		return false
	}
	return now.Sub(status.StartTime.Time) >= time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second
}

// succeeded reports whether the Job met its completions: every index of an
// Indexed Job, .spec.completions pods, or (work queue) one success and no
// pod left running.
func succeeded(job *batchv1.Job, status *batchv1.JobStatus, active int) bool {
	switch {
	case isIndexed(job):
		return int(status.Succeeded) >= completionsOf(job)
	case job.Spec.Completions != nil:
		return status.Succeeded >= *job.Spec.Completions
	}
	return status.Succeeded > 0 && active == 0
}

// podIndex is the pod's completion index, or -1.
func podIndex(pod *corev1.Pod) int {
	v, ok := pod.Annotations[completionIndexKey]
	if !ok {
		v, ok = pod.Labels[completionIndexKey]
	}
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func conditionTrue(conds []batchv1.JobCondition, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range conds {
		if conds[i].Type == t && conds[i].Status == corev1.ConditionTrue {
			return &conds[i]
		}
	}
	return nil
}

// setCondition sets a condition as Kubernetes' ensureJobConditionStatus
// does: a False condition is not added when absent. It reports a change.
func setCondition(status *batchv1.JobStatus, t batchv1.JobConditionType, s corev1.ConditionStatus, reason, message string, now time.Time) bool {
	cond := batchv1.JobCondition{
		Type: t, Status: s, Reason: reason, Message: message,
		LastProbeTime: metav1.Time{Time: now}, LastTransitionTime: metav1.Time{Time: now},
	}
	for i := range status.Conditions {
		old := &status.Conditions[i]
		if old.Type != t {
			continue
		}
		if old.Status == s && old.Reason == reason && old.Message == message {
			return false
		}
		status.Conditions[i] = cond
		return true
	}
	if s == corev1.ConditionFalse {
		return false
	}
	status.Conditions = append(status.Conditions, cond)
	return true
}
