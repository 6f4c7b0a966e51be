package registry

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// podsResource is core/v1 pods: pkg/registry/core/pod's strategies and
// validation, and the pod printer of `kubectl get pods`.
func podsResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "pods",
		Kind:         "Pod",
		SingularName: "pod",
		Namespaced:   true,
		ShortNames:   []string{"po"},
		Categories:   []string{"all"},
		Subresources: []string{"status", "binding", "eviction", "log", "exec", "attach", "portforward", "ephemeralcontainers"},
		New:          func() runtime.Object { return &corev1.Pod{} },
		NewList:      func() runtime.Object { return &corev1.PodList{} },
		Default:      func(obj runtime.Object) { defaultPod(obj.(*corev1.Pod)) },
		PrepareForCreate: func(obj runtime.Object) {
			preparePodForCreate(obj.(*corev1.Pod))
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
			pod.Status = oldPod.Status
			// Ephemeral containers change only through their subresource.
			pod.Spec.EphemeralContainers = oldPod.Spec.EphemeralContainers
			bumpGeneration(pod, oldPod, &pod.Spec, &oldPod.Spec)
		},
		PrepareForStatusUpdate: preparePodForStatusUpdate,
		PrepareForSubresource: map[string]func(obj, old runtime.Object){
			"ephemeralcontainers": func(obj, old runtime.Object) {
				pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
				ecs := pod.Spec.EphemeralContainers
				meta := pod.ObjectMeta
				*pod = *oldPod.DeepCopy()
				pod.ObjectMeta.ResourceVersion = meta.ResourceVersion
				pod.Spec.EphemeralContainers = ecs
				bumpGeneration(pod, oldPod, &pod.Spec, &oldPod.Spec)
			},
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validatePod(obj.(*corev1.Pod)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePodUpdate(obj.(*corev1.Pod), old.(*corev1.Pod))
		},
		Columns:        podColumns(),
		Row:            func(obj runtime.Object) []interface{} { return podRow(obj.(*corev1.Pod)) },
		Fields:         func(obj runtime.Object) fields.Set { return podFields(obj.(*corev1.Pod)) },
		GracefulDelete: podGracefulDelete,
	}
}

func defaultPod(pod *corev1.Pod) {
	defaultPodSpec(&pod.Spec)
	defaultPodOnly(pod)
}

// preparePodForCreate: a new pod is Pending with its QoS class computed
// once; a pod with scheduling gates says why it is not scheduled.
func preparePodForCreate(pod *corev1.Pod) {
	pod.Generation = 1 // since Kubernetes 1.33 (KEP-5067)
	addDefaultTolerationSeconds(pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: podQOSClass(pod)}
	if len(pod.Spec.SchedulingGates) > 0 {
		pod.Status.Conditions = []corev1.PodCondition{{
			Type:    corev1.PodScheduled,
			Status:  corev1.ConditionFalse,
			Reason:  corev1.PodReasonSchedulingGated,
			Message: "Scheduling is blocked due to non-empty scheduling gates",
		}}
	}
}

// preparePodForStatusUpdate keeps the spec and owner references: old
// kubelets corrupted owner references through status writes, so Kubernetes
// ignores them there. The QoS class is set once at creation.
func preparePodForStatusUpdate(obj, old runtime.Object) {
	pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
	pod.Spec = oldPod.Spec
	pod.OwnerReferences = oldPod.OwnerReferences
	if pod.Status.QOSClass == "" {
		pod.Status.QOSClass = oldPod.Status.QOSClass
	}
	pod.Generation = oldPod.Generation
}

// podQOSClass is Kubernetes' GetPodQOS: Guaranteed when every container
// limits cpu and memory and requests equal limits, BestEffort when nothing
// is requested or limited, else Burstable. Pod-level resources, when set,
// decide alone.
func podQOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	add := func(into corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		sum := q.DeepCopy()
		if prev, ok := into[name]; ok {
			sum.Add(prev)
		}
		into[name] = sum
	}
	account := func(r corev1.ResourceRequirements) {
		for name, q := range r.Requests {
			if (name == corev1.ResourceCPU || name == corev1.ResourceMemory) && q.Sign() > 0 {
				add(requests, name, q)
			}
		}
		found := 0
		for name, q := range r.Limits {
			if (name == corev1.ResourceCPU || name == corev1.ResourceMemory) && q.Sign() > 0 {
				add(limits, name, q)
				found++
			}
		}
		if found != 2 {
			guaranteed = false
		}
	}
	if pr := pod.Spec.Resources; pr != nil && (len(pr.Requests) > 0 || len(pr.Limits) > 0) {
		account(*pr)
	} else {
		for _, c := range pod.Spec.Containers {
			account(c.Resources)
		}
		for _, c := range pod.Spec.InitContainers {
			account(c.Resources)
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
				break
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// validatePod is the pod-specific part of ValidatePodCreate (metadata is
// checked by the generic handler). It runs on create and on every update.
func validatePod(pod *corev1.Pod) field.ErrorList {
	specPath := field.NewPath("spec")
	allErrs := validatePodSpecWithOptions(&pod.Spec, podSpecOptions{isPod: true}, specPath)
	for _, group := range []struct {
		name       string
		containers []corev1.Container
	}{{"containers", pod.Spec.Containers}, {"initContainers", pod.Spec.InitContainers}} {
		for i, c := range group.containers {
			if c.Image != strings.TrimSpace(c.Image) {
				allErrs = append(allErrs, field.Invalid(specPath.Child(group.name).Index(i).Child("image"), c.Image,
					"must not have leading or trailing whitespace"))
			}
		}
	}
	allErrs = append(allErrs, validatePodStatus(&pod.Status, field.NewPath("status"))...)
	return allErrs
}

func validatePodStatus(st *corev1.PodStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if st.NominatedNodeName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(st.NominatedNodeName) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("nominatedNodeName"), st.NominatedNodeName, msg))
		}
	}
	for i, ip := range st.PodIPs {
		allErrs = append(allErrs, validation.IsValidIP(fldPath.Child("podIPs").Index(i).Child("ip"), ip.IP)...)
	}
	for i, ip := range st.HostIPs {
		allErrs = append(allErrs, validation.IsValidIP(fldPath.Child("hostIPs").Index(i).Child("ip"), ip.IP)...)
	}
	if len(st.PodIPs) > 2 {
		allErrs = append(allErrs, field.TooMany(fldPath.Child("podIPs"), len(st.PodIPs), 2))
	}
	return allErrs
}

// updatablePodSpecFields is the list Kubernetes names in its "pod updates
// may not change fields other than" error.
var updatablePodSpecFields = []string{
	"`spec.containers[*].image`",
	"`spec.initContainers[*].image`",
	"`spec.activeDeadlineSeconds`",
	"`spec.tolerations` (only additions to existing tolerations)",
	"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
}

// validatePodUpdate is ValidatePodUpdate: a pod's spec is immutable except
// the images, a shorter activeDeadlineSeconds, added tolerations, added
// ephemeral containers, removed scheduling gates and a negative
// terminationGracePeriodSeconds raised to 1.
func validatePodUpdate(pod, old *corev1.Pod) field.ErrorList {
	specPath := field.NewPath("spec")
	var allErrs field.ErrorList
	if len(pod.Spec.Containers) != len(old.Spec.Containers) {
		return field.ErrorList{field.Forbidden(specPath.Child("containers"), "pod updates may not add or remove containers")}
	}
	if len(pod.Spec.InitContainers) != len(old.Spec.InitContainers) {
		return field.ErrorList{field.Forbidden(specPath.Child("initContainers"), "pod updates may not add or remove containers")}
	}

	if ads := pod.Spec.ActiveDeadlineSeconds; ads != nil {
		if *ads < 0 || *ads > math.MaxInt32 {
			return field.ErrorList{field.Invalid(specPath.Child("activeDeadlineSeconds"), *ads, validation.InclusiveRangeError(0, math.MaxInt32))}
		}
		if o := old.Spec.ActiveDeadlineSeconds; o != nil && *o < *ads {
			return field.ErrorList{field.Invalid(specPath.Child("activeDeadlineSeconds"), *ads, "must be less than or equal to previous value")}
		}
	} else if old.Spec.ActiveDeadlineSeconds != nil {
		allErrs = append(allErrs, field.Invalid(specPath.Child("activeDeadlineSeconds"), pod.Spec.ActiveDeadlineSeconds,
			"must not update from a positive integer to nil value"))
	}
	allErrs = append(allErrs, validateOnlyAddedTolerations(pod.Spec.Tolerations, old.Spec.Tolerations, specPath.Child("tolerations"))...)
	allErrs = append(allErrs, validateOnlyAddedEphemeralContainers(pod.Spec.EphemeralContainers, old.Spec.EphemeralContainers, specPath.Child("ephemeralContainers"))...)
	allErrs = append(allErrs, validateOnlyRemovedSchedulingGates(pod.Spec.SchedulingGates, old.Spec.SchedulingGates, specPath.Child("schedulingGates"))...)

	// Compare the rest: copy the updatable fields from old into a copy of
	// the new spec; anything left different is a forbidden change.
	munged := pod.Spec.DeepCopy()
	for i := range munged.Containers {
		munged.Containers[i].Image = old.Spec.Containers[i].Image
	}
	for i := range munged.InitContainers {
		munged.InitContainers[i].Image = old.Spec.InitContainers[i].Image
	}
	munged.ActiveDeadlineSeconds = old.Spec.ActiveDeadlineSeconds
	munged.Tolerations = old.Spec.Tolerations
	munged.EphemeralContainers = old.Spec.EphemeralContainers
	munged.SchedulingGates = old.Spec.SchedulingGates
	if o, n := old.Spec.TerminationGracePeriodSeconds, pod.Spec.TerminationGracePeriodSeconds; o != nil && *o < 0 && n != nil && *n == 1 {
		munged.TerminationGracePeriodSeconds = o
	}
	if !apiequality.Semantic.DeepEqual(*munged, old.Spec) {
		allErrs = append(allErrs, field.Forbidden(specPath, fmt.Sprintf("pod updates may not change fields other than %s\n%v",
			strings.Join(updatablePodSpecFields, ","), diff.Diff(old.Spec, *munged))))
	}
	return allErrs
}

func validateOnlyAddedTolerations(tolerations, old []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	for _, o := range old {
		found := false
		for _, t := range tolerations {
			clone := o
			clone.TolerationSeconds = t.TolerationSeconds
			if reflect.DeepEqual(clone, t) {
				found = true
				break
			}
		}
		if !found {
			return field.ErrorList{field.Forbidden(fldPath, "existing toleration can not be modified except its tolerationSeconds")}
		}
	}
	return nil
}

func validateOnlyAddedEphemeralContainers(ecs, old []corev1.EphemeralContainer, fldPath *field.Path) field.ErrorList {
	byName := map[string]*corev1.EphemeralContainer{}
	for i := range ecs {
		byName[ecs[i].Name] = &ecs[i]
	}
	var allErrs field.ErrorList
	for i := range old {
		n, ok := byName[old[i].Name]
		if !ok {
			allErrs = append(allErrs, field.Forbidden(fldPath, fmt.Sprintf("existing ephemeral containers %q may not be removed", old[i].Name)))
			continue
		}
		if !apiequality.Semantic.DeepEqual(old[i], *n) {
			allErrs = append(allErrs, field.Forbidden(fldPath.Index(i), fmt.Sprintf("existing ephemeral containers %q may not be changed", old[i].Name)))
		}
	}
	return allErrs
}

func validateOnlyRemovedSchedulingGates(gates, old []corev1.PodSchedulingGate, fldPath *field.Path) field.ErrorList {
	had := map[string]bool{}
	for _, g := range old {
		had[g.Name] = true
	}
	for _, g := range gates {
		if !had[g.Name] {
			return field.ErrorList{field.Forbidden(fldPath, "only deletion is allowed, but found new scheduling gate '"+g.Name+"'")}
		}
	}
	return nil
}

func podColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		nameColumn(),
		column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
		column("Status", "string", "The aggregate status of the containers in this pod.", 0),
		column("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
		ageColumn(),
		column("IP", "string", corev1.PodStatus{}.SwaggerDoc()["podIP"], 1),
		column("Node", "string", corev1.PodSpec{}.SwaggerDoc()["nodeName"], 1),
		column("Nominated Node", "string", corev1.PodStatus{}.SwaggerDoc()["nominatedNodeName"], 1),
		column("Readiness Gates", "string", corev1.PodSpec{}.SwaggerDoc()["readinessGates"], 1),
	}
}

// podRow is printPod of Kubernetes' printers: STATUS is the most telling
// reason (a failing init container, a waiting or terminated container,
// Terminating), READY counts ready containers and started sidecars.
func podRow(pod *corev1.Pod) []interface{} {
	restarts, sidecarRestarts := 0, 0
	total := len(pod.Spec.Containers)
	ready := 0
	var lastRestart, lastSidecarRestart metav1.Time

	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	sidecars := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
			total++
		}
	}
	later := func(t *metav1.Time, st corev1.ContainerStatus) {
		if term := st.LastTerminationState.Terminated; term != nil && t.Before(&term.FinishedAt) {
			*t = term.FinishedAt
		}
	}

	initializing := false
	for i, st := range pod.Status.InitContainerStatuses {
		restarts += int(st.RestartCount)
		later(&lastRestart, st)
		if sidecars[st.Name] {
			sidecarRestarts += int(st.RestartCount)
			later(&lastSidecarRestart, st)
		}
		term := st.State.Terminated
		switch {
		case term != nil && term.ExitCode == 0:
			continue
		case sidecars[st.Name] && st.Started != nil && *st.Started:
			if st.Ready {
				ready++
			}
			continue
		case term != nil:
			switch {
			case term.Reason != "":
				reason = "Init:" + term.Reason
			case term.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", term.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", term.ExitCode)
			}
		case st.State.Waiting != nil && st.State.Waiting.Reason != "" && st.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + st.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing || podConditionTrue(pod, corev1.PodInitialized) {
		restarts, lastRestart = sidecarRestarts, lastSidecarRestart
		hasRunning := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			st := pod.Status.ContainerStatuses[i]
			restarts += int(st.RestartCount)
			later(&lastRestart, st)
			switch term := st.State.Terminated; {
			case st.State.Waiting != nil && st.State.Waiting.Reason != "":
				reason = st.State.Waiting.Reason
			case term != nil && term.Reason != "":
				reason = term.Reason
			case term != nil && term.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", term.Signal)
			case term != nil:
				reason = fmt.Sprintf("ExitCode:%d", term.ExitCode)
			case st.Ready && st.State.Running != nil:
				hasRunning = true
				ready++
			}
		}
		// A container still running keeps a "Completed" pod Running.
		if reason == "Completed" && hasRunning {
			if podConditionTrue(pod, corev1.PodReady) {
				reason = "Running"
			} else {
				reason = "NotReady"
			}
		}
	}

	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if pod.DeletionTimestamp != nil && pod.Status.Reason == "NodeLost" {
		reason = "Unknown"
	} else if pod.DeletionTimestamp != nil && !terminal {
		reason = "Terminating"
	}

	restartsText := strconv.Itoa(restarts)
	if restarts != 0 && !lastRestart.IsZero() {
		restartsText = fmt.Sprintf("%d (%s ago)", restarts, translateTimestampSince(lastRestart))
	}

	ip := "<none>"
	if len(pod.Status.PodIPs) > 0 && pod.Status.PodIPs[0].IP != "" {
		ip = pod.Status.PodIPs[0].IP
	}
	gates := "<none>"
	if len(pod.Spec.ReadinessGates) > 0 {
		trueGates := 0
		for _, g := range pod.Spec.ReadinessGates {
			if podConditionTrue(pod, g.ConditionType) {
				trueGates++
			}
		}
		gates = fmt.Sprintf("%d/%d", trueGates, len(pod.Spec.ReadinessGates))
	}
	return []interface{}{
		pod.Name, fmt.Sprintf("%d/%d", ready, total), reason, restartsText,
		translateTimestampSince(pod.CreationTimestamp),
		ip, orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates,
	}
}

// podConditionTrue reports whether the first condition of type t is True.
func podConditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// podFields are the pod field selectors Kubernetes supports (kubelets
// watch spec.nodeName, kubectl uses status.phase).
func podFields(pod *corev1.Pod) fields.Set {
	ip := ""
	if len(pod.Status.PodIPs) > 0 {
		ip = pod.Status.PodIPs[0].IP
	}
	return fields.Set{
		"spec.nodeName":            pod.Spec.NodeName,
		"spec.restartPolicy":       string(pod.Spec.RestartPolicy),
		"spec.schedulerName":       pod.Spec.SchedulerName,
		"spec.serviceAccountName":  pod.Spec.ServiceAccountName,
		"spec.hostNetwork":         strconv.FormatBool(pod.Spec.HostNetwork),
		"status.phase":             string(pod.Status.Phase),
		"status.podIP":             ip,
		"status.nominatedNodeName": pod.Status.NominatedNodeName,
	}
}

// defaultTolerationSeconds is how long a pod stays on a node that is not
// ready or unreachable before it is evicted (kube-apiserver's
// --default-not-ready-toleration-seconds and
// --default-unreachable-toleration-seconds).
const defaultTolerationSeconds = 300

// addDefaultTolerationSeconds is the DefaultTolerationSeconds admission
// plugin: a new pod that does not tolerate the not-ready or unreachable
// NoExecute taints gets a 300 s toleration of each.
func addDefaultTolerationSeconds(pod *corev1.Pod) {
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		tolerated := false
		for _, t := range pod.Spec.Tolerations {
			if (t.Key == key || t.Key == "" && t.Operator == corev1.TolerationOpExists) &&
				(t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
				tolerated = true
				break
			}
		}
		if !tolerated {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
				Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute,
				TolerationSeconds: ptr.To(int64(defaultTolerationSeconds)),
			})
		}
	}
}
