package job

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// Name limits of generated pod names and hostnames (DNS labels), as
// Kubernetes' name generator and job controller apply them.
const (
	maxNameLength       = 63
	randomSuffixLength  = 5
	maxGeneratedNameLen = maxNameLength - randomSuffixLength
)

// createPod creates one pod of job (index -1 for NonIndexed Jobs). It
// returns nil without error when the generated name was taken.
func (c *Controller) createPod(ctx context.Context, key string, job *batchv1.Job, index int) (*corev1.Pod, error) {
	pod := newPod(job, index)
	c.expect.ExpectCreate(key, pod.Name, c.now())
	obj, err := c.api.Create(ctx, podsGVR, pod, c.opts.FieldManager)
	if err != nil {
		c.expect.ObserveCreate(key, pod.Name)
		if apierrors.IsAlreadyExists(err) {
			return nil, nil
		}
		c.recorder.Eventf(job, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return nil, fmt.Errorf("create pod for job %s: %w", key, err)
	}
	c.recorder.Eventf(job, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", pod.Name)
	created, ok := obj.(*corev1.Pod)
	if !ok {
		return pod, nil
	}
	return created, nil
}

// newPod builds a pod from the Job's template: the Job's labels, its
// controller reference, the tracking finalizer and, for Indexed Jobs, the
// completion index (annotation, label, JOB_COMPLETION_INDEX and hostname
// <job>-<index>). The name is generated here (generateName plus a random
// suffix, as the API server would) so that expectations know it.
func newPod(job *batchv1.Job, index int) *corev1.Pod {
	tmpl := job.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   job.Namespace,
			Labels:      maps.Clone(tmpl.Labels),
			Annotations: maps.Clone(tmpl.Annotations),
			Finalizers:  append(tmpl.Finalizers, trackingFinalizer),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job,
				batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: tmpl.Spec,
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	// The API server puts these in the template of Jobs without a manual
	// selector; set them anyway so every pod can be found by them.
	for k, v := range map[string]string{
		labelJobName: job.Name, legacyLabelJobName: job.Name,
		labelControllerUID: string(job.UID), legacyLabelControlID: string(job.UID),
	} {
		if _, ok := pod.Labels[k]; !ok {
			pod.Labels[k] = v
		}
	}
	prefix := job.Name + "-"
	if index >= 0 {
		idx := strconv.Itoa(index)
		prefix = job.Name + "-" + idx + "-"
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[completionIndexKey] = idx
		pod.Labels[completionIndexKey] = idx
		if pod.Spec.Hostname == "" {
			hostname := job.Name + "-" + idx
			if len(hostname) > maxNameLength {
				hostname = hostname[:maxNameLength]
			}
			pod.Spec.Hostname = hostname
		}
		addIndexEnv(pod.Spec.InitContainers)
		addIndexEnv(pod.Spec.Containers)
	}
	if len(prefix) > maxGeneratedNameLen {
		prefix = prefix[:maxGeneratedNameLen]
	}
	pod.GenerateName = prefix
	pod.Name = prefix + rand.String(randomSuffixLength)
	return pod
}

// addIndexEnv gives containers JOB_COMPLETION_INDEX from the pod's
// annotation through the downward API, unless they define it.
func addIndexEnv(containers []corev1.Container) {
	for i := range containers {
		c := &containers[i]
		defined := false
		for _, e := range c.Env {
			if e.Name == completionIndexEnv {
				defined = true
			}
		}
		if defined {
			continue
		}
		c.Env = append(c.Env, corev1.EnvVar{
			Name: completionIndexEnv,
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
				FieldPath: fmt.Sprintf("metadata.annotations['%s']", completionIndexKey),
			}},
		})
	}
}

func isNotFoundOrConflict(err error) bool {
	// Conflict: the uid precondition failed, the pod is already gone.
	return apierrors.IsNotFound(err) || apierrors.IsConflict(err)
}
