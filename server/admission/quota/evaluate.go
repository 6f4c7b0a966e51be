package quota

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Operation is the kind of write being admitted.
type Operation int

// Operations quota admission distinguishes.
const (
	Create Operation = iota
	Update
)

var (
	podsGR      = schema.GroupResource{Resource: "pods"}
	servicesGR  = schema.GroupResource{Resource: "services"}
	claimsGR    = schema.GroupResource{Resource: "persistentvolumeclaims"}
	podCountRes = ObjectCountName(podsGR)
)

// storageClassSuffix ends the per-class PVC quota names, e.g.
// "gold.storageclass.storage.k8s.io/requests.storage".
const storageClassSuffix = ".storageclass.storage.k8s.io/"

// legacyCountNames are the object counts quota tracked before count/*
// existed; both names count the same objects.
var legacyCountNames = map[schema.GroupResource]corev1.ResourceName{
	{Resource: "configmaps"}:             corev1.ResourceConfigMaps,
	{Resource: "secrets"}:                corev1.ResourceSecrets,
	{Resource: "replicationcontrollers"}: corev1.ResourceReplicationControllers,
	{Resource: "resourcequotas"}:         corev1.ResourceQuotas,
}

// podQuotaNames are the quota names the pod evaluator tracks besides the
// prefixed ones (hugepages, extended resources).
var podQuotaNames = sets.New(
	podCountRes, corev1.ResourcePods,
	corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage,
	corev1.ResourceRequestsCPU, corev1.ResourceRequestsMemory, corev1.ResourceRequestsEphemeralStorage,
	corev1.ResourceLimitsCPU, corev1.ResourceLimitsMemory, corev1.ResourceLimitsEphemeralStorage,
)

// validationSet is the compute resources a pod must set explicitly on every
// container when a quota tracks them: an old upstream mistake kept for
// compatibility, limited to cpu and memory.
var validationSet = sets.New(
	corev1.ResourceCPU, corev1.ResourceMemory,
	corev1.ResourceRequestsCPU, corev1.ResourceRequestsMemory,
	corev1.ResourceLimitsCPU, corev1.ResourceLimitsMemory,
)

// ObjectCountName is the quota name counting objects of gr:
// "count/pods" for the core group, "count/deployments.apps" otherwise.
func ObjectCountName(gr schema.GroupResource) corev1.ResourceName {
	return corev1.ResourceName("count/" + gr.String())
}

// GroupResourceOf returns the resource whose objects a quota name counts,
// for the names that count objects of one resource; ok is false for names
// that are not object counts (compute resources, storage, node ports).
func GroupResourceOf(name corev1.ResourceName) (gr schema.GroupResource, ok bool) {
	if rest, found := strings.CutPrefix(string(name), "count/"); found {
		return schema.ParseGroupResource(rest), true
	}
	for gr, legacy := range legacyCountNames {
		if legacy == name {
			return gr, true
		}
	}
	return schema.GroupResource{}, false
}

// MatchingResources returns the names among input that objects of gr
// consume (the evaluator's MatchingResources).
func MatchingResources(gr schema.GroupResource, input []corev1.ResourceName) []corev1.ResourceName {
	var out []corev1.ResourceName
	for _, name := range input {
		if tracks(gr, name) {
			out = append(out, name)
		}
	}
	return out
}

func tracks(gr schema.GroupResource, name corev1.ResourceName) bool {
	if name == ObjectCountName(gr) {
		return true
	}
	switch gr {
	case podsGR:
		s := string(name)
		return podQuotaNames.Has(name) ||
			strings.HasPrefix(s, corev1.ResourceHugePagesPrefix) ||
			strings.HasPrefix(s, corev1.ResourceRequestsHugePagesPrefix) ||
			isExtendedRequest(name)
	case servicesGR:
		return name == corev1.ResourceServices || name == corev1.ResourceServicesNodePorts ||
			name == corev1.ResourceServicesLoadBalancers
	case claimsGR:
		s := string(name)
		return name == corev1.ResourcePersistentVolumeClaims || name == corev1.ResourceRequestsStorage ||
			strings.HasSuffix(s, storageClassSuffix+string(corev1.ResourceRequestsStorage)) ||
			strings.HasSuffix(s, storageClassSuffix+string(corev1.ResourcePersistentVolumeClaims))
	}
	legacy, ok := legacyCountNames[gr]
	return ok && legacy == name
}

// isExtendedRequest reports whether name is "requests.<extended resource>"
// (a name with a domain outside kubernetes.io), the only quota form
// extended resources have.
func isExtendedRequest(name corev1.ResourceName) bool {
	rest, ok := strings.CutPrefix(string(name), corev1.DefaultResourceRequestsPrefix)
	return ok && isExtendedResourceName(corev1.ResourceName(rest))
}

func isExtendedResourceName(name corev1.ResourceName) bool {
	s := string(name)
	if !strings.Contains(s, "/") || strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix) {
		return false
	}
	domain := s[:strings.Index(s, "/")]
	return domain != "kubernetes.io" && !strings.HasSuffix(domain, ".kubernetes.io")
}

// Handles reports whether a write of op to gr can change quota usage: pods
// are charged on create only (their resources are immutable), services and
// claims on create and update (type, ports and size may change), other
// objects are only counted when created.
func Handles(gr schema.GroupResource, op Operation) bool {
	if op == Create {
		return true
	}
	return gr == servicesGR || gr == claimsGR
}

// Usage is what obj, an object of gr, consumes. now decides whether a pod
// whose deletion grace period has run out still counts.
func Usage(gr schema.GroupResource, obj runtime.Object, now time.Time) corev1.ResourceList {
	switch gr {
	case podsGR:
		if pod, ok := obj.(*corev1.Pod); ok {
			return PodUsage(pod, now)
		}
	case servicesGR:
		if svc, ok := obj.(*corev1.Service); ok {
			return serviceUsage(svc)
		}
	case claimsGR:
		if pvc, ok := obj.(*corev1.PersistentVolumeClaim); ok {
			return claimUsage(pvc)
		}
	}
	out := corev1.ResourceList{ObjectCountName(gr): one()}
	if legacy, ok := legacyCountNames[gr]; ok {
		out[legacy] = one()
	}
	return out
}

// Matches reports whether quota constrains obj: the quota's status.hard
// names something objects of gr consume, and obj is selected by every scope
// of the quota.
func Matches(q *corev1.ResourceQuota, gr schema.GroupResource, obj runtime.Object) bool {
	if len(MatchingResources(gr, ResourceNames(q.Status.Hard))) == 0 {
		return false
	}
	return MatchesScopes(q, gr, obj)
}

// MatchesScopes reports whether obj is selected by every scope of quota
// (spec.scopes and spec.scopeSelector). Only pods have scopes; any scope
// excludes other kinds.
func MatchesScopes(q *corev1.ResourceQuota, gr schema.GroupResource, obj runtime.Object) bool {
	for _, sel := range ScopeSelectors(q) {
		pod, ok := obj.(*corev1.Pod)
		if gr != podsGR || !ok || !podMatchesScope(sel, pod) {
			return false
		}
	}
	return true
}

// ScopeSelectors returns the quota's scopes as selector requirements.
func ScopeSelectors(q *corev1.ResourceQuota) []corev1.ScopedResourceSelectorRequirement {
	var out []corev1.ScopedResourceSelectorRequirement
	for _, s := range q.Spec.Scopes {
		out = append(out, corev1.ScopedResourceSelectorRequirement{ScopeName: s, Operator: corev1.ScopeSelectorOpExists})
	}
	if q.Spec.ScopeSelector != nil {
		out = append(out, q.Spec.ScopeSelector.MatchExpressions...)
	}
	return out
}

func podMatchesScope(sel corev1.ScopedResourceSelectorRequirement, pod *corev1.Pod) bool {
	switch sel.ScopeName {
	case corev1.ResourceQuotaScopeTerminating:
		return isTerminating(pod)
	case corev1.ResourceQuotaScopeNotTerminating:
		return !isTerminating(pod)
	case corev1.ResourceQuotaScopeBestEffort:
		return IsBestEffort(pod)
	case corev1.ResourceQuotaScopeNotBestEffort:
		return !IsBestEffort(pod)
	case corev1.ResourceQuotaScopePriorityClass:
		class := pod.Spec.PriorityClassName
		switch sel.Operator {
		case corev1.ScopeSelectorOpExists:
			return class != ""
		case corev1.ScopeSelectorOpDoesNotExist:
			return class == ""
		case corev1.ScopeSelectorOpIn:
			return class != "" && sets.New(sel.Values...).Has(class)
		case corev1.ScopeSelectorOpNotIn:
			return class == "" || !sets.New(sel.Values...).Has(class)
		}
	case corev1.ResourceQuotaScopeCrossNamespacePodAffinity:
		return usesCrossNamespaceAffinity(pod)
	}
	return false
}

func isTerminating(pod *corev1.Pod) bool {
	return pod.Spec.ActiveDeadlineSeconds != nil && *pod.Spec.ActiveDeadlineSeconds >= 0
}

func usesCrossNamespaceAffinity(pod *corev1.Pod) bool {
	a := pod.Spec.Affinity
	if a == nil {
		return false
	}
	cross := func(t corev1.PodAffinityTerm) bool { return len(t.Namespaces) > 0 || t.NamespaceSelector != nil }
	var terms []corev1.PodAffinityTerm
	if a.PodAffinity != nil {
		terms = append(terms, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution...)
		for _, w := range a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	if a.PodAntiAffinity != nil {
		terms = append(terms, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution...)
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	for _, t := range terms {
		if cross(t) {
			return true
		}
	}
	return false
}

// IsBestEffort reports whether pod is of the BestEffort QoS class: no
// container requests or limits any cpu or memory.
func IsBestEffort(pod *corev1.Pod) bool {
	all := make([]corev1.Container, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	all = append(append(all, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for _, list := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
			for name, q := range list {
				if (name == corev1.ResourceCPU || name == corev1.ResourceMemory) && q.Sign() > 0 {
					return false
				}
			}
		}
	}
	return true
}

// Counts reports whether pod still consumes compute quota: it is not in a
// terminal phase, and it is not being deleted past its grace period.
func Counts(pod *corev1.Pod, now time.Time) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	if pod.DeletionTimestamp != nil && pod.DeletionGracePeriodSeconds != nil {
		end := pod.DeletionTimestamp.Add(time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second)
		if now.After(end) {
			return false
		}
	}
	return true
}

// PodUsage is what pod consumes: count/pods always (object counts track
// everything stored), compute resources only while the pod counts.
func PodUsage(pod *corev1.Pod, now time.Time) corev1.ResourceList {
	out := corev1.ResourceList{podCountRes: one()}
	if !Counts(pod, now) {
		return out
	}
	return Add(out, computeUsage(PodRequests(pod), PodLimits(pod)))
}

// computeUsage maps a pod's (or container's) requests and limits to quota
// names; it always includes pods=1.
func computeUsage(requests, limits corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{corev1.ResourcePods: one()}
	for _, r := range []struct{ res, plain, req, lim corev1.ResourceName }{
		{corev1.ResourceCPU, corev1.ResourceCPU, corev1.ResourceRequestsCPU, corev1.ResourceLimitsCPU},
		{corev1.ResourceMemory, corev1.ResourceMemory, corev1.ResourceRequestsMemory, corev1.ResourceLimitsMemory},
		{corev1.ResourceEphemeralStorage, corev1.ResourceEphemeralStorage, corev1.ResourceRequestsEphemeralStorage, corev1.ResourceLimitsEphemeralStorage},
	} {
		if q, ok := requests[r.res]; ok {
			out[r.plain] = q.DeepCopy()
			out[r.req] = q.DeepCopy()
		}
		if q, ok := limits[r.res]; ok {
			out[r.lim] = q.DeepCopy()
		}
	}
	for name, q := range requests {
		if strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) {
			out[name] = q.DeepCopy()
			out[corev1.DefaultResourceRequestsPrefix+name] = q.DeepCopy()
		}
		if isExtendedResourceName(name) {
			out[corev1.DefaultResourceRequestsPrefix+name] = q.DeepCopy()
		}
	}
	return out
}

// PodRequests is the effective request of pod: the larger of what its app
// containers and sidecars (restartable init containers) request together
// and what any init container needs while it runs beside the sidecars
// started before it, plus the pod overhead.
func PodRequests(pod *corev1.Pod) corev1.ResourceList {
	return sumPodResources(pod, func(c *corev1.Container) corev1.ResourceList { return c.Resources.Requests }, false)
}

// PodLimits is PodRequests for limits; the overhead is added only to
// resources that have a limit.
func PodLimits(pod *corev1.Pod) corev1.ResourceList {
	return sumPodResources(pod, func(c *corev1.Container) corev1.ResourceList { return c.Resources.Limits }, true)
}

func sumPodResources(pod *corev1.Pod, of func(*corev1.Container) corev1.ResourceList, limits bool) corev1.ResourceList {
	total := corev1.ResourceList{}
	for i := range pod.Spec.Containers {
		total = Add(total, of(&pod.Spec.Containers[i]))
	}
	sidecars, initMax := corev1.ResourceList{}, corev1.ResourceList{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := of(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			total = Add(total, r)
			sidecars = Add(sidecars, r)
			r = sidecars
		} else {
			r = Add(r, sidecars)
		}
		initMax = maxList(initMax, r)
	}
	total = maxList(total, initMax)
	for name, q := range pod.Spec.Overhead {
		if _, has := total[name]; limits && !has {
			continue
		}
		total = Add(total, corev1.ResourceList{name: q})
	}
	return total
}

func maxList(a, b corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for k, v := range a {
		out[k] = v.DeepCopy()
	}
	for k, v := range b {
		if cur, ok := out[k]; !ok || v.Cmp(cur) > 0 {
			out[k] = v.DeepCopy()
		}
	}
	return out
}

func serviceUsage(svc *corev1.Service) corev1.ResourceList {
	out := corev1.ResourceList{
		ObjectCountName(servicesGR):          one(),
		corev1.ResourceServices:              one(),
		corev1.ResourceServicesLoadBalancers: {Format: resource.DecimalSI},
		corev1.ResourceServicesNodePorts:     {Format: resource.DecimalSI},
	}
	ports := *resource.NewQuantity(int64(len(svc.Spec.Ports)), resource.DecimalSI)
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		out[corev1.ResourceServicesNodePorts] = ports
	case corev1.ServiceTypeLoadBalancer:
		out[corev1.ResourceServicesLoadBalancers] = one()
		if a := svc.Spec.AllocateLoadBalancerNodePorts; a == nil || *a {
			out[corev1.ResourceServicesNodePorts] = ports
		}
	}
	return out
}

func claimUsage(pvc *corev1.PersistentVolumeClaim) corev1.ResourceList {
	out := corev1.ResourceList{
		ObjectCountName(claimsGR):             one(),
		corev1.ResourcePersistentVolumeClaims: one(),
	}
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	} else if c, ok := pvc.Annotations[corev1.BetaStorageClassAnnotation]; ok {
		class = c
	}
	if class != "" {
		out[corev1.ResourceName(class+storageClassSuffix+string(corev1.ResourcePersistentVolumeClaims))] = one()
	}
	// A claim being expanded is charged for the larger of what it asks and
	// what was allocated, so that shrinking a failed expansion frees nothing.
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if alloc, has := pvc.Status.AllocatedResources[corev1.ResourceStorage]; has && (!ok || alloc.Cmp(size) > 0) {
		size, ok = alloc, true
	}
	if ok {
		out[corev1.ResourceRequestsStorage] = size.DeepCopy()
		if class != "" {
			out[corev1.ResourceName(class+storageClassSuffix+string(corev1.ResourceRequestsStorage))] = size.DeepCopy()
		}
	}
	return out
}

// Constraints checks that obj satisfies what a quota tracking required
// demands of it: a pod must set, on every container, the requests and
// limits of the cpu and memory resources quota tracks. The error text is
// Kubernetes': "must specify limits.cpu for: app; requests.memory for: app,init".
func Constraints(gr schema.GroupResource, required []corev1.ResourceName, obj runtime.Object) error {
	pod, ok := obj.(*corev1.Pod)
	if gr != podsGR || !ok {
		return nil
	}
	req := sets.New(required...).Intersection(validationSet)
	if req.Len() == 0 {
		return nil
	}
	missing := map[corev1.ResourceName]sets.Set[string]{}
	check := func(c *corev1.Container) {
		have := sets.New(ResourceNames(computeUsage(c.Resources.Requests, c.Resources.Limits))...)
		for _, name := range req.Difference(have).UnsortedList() {
			if missing[name] == nil {
				missing[name] = sets.New[string]()
			}
			missing[name].Insert(c.Name)
		}
	}
	for i := range pod.Spec.Containers {
		check(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.InitContainers {
		check(&pod.Spec.InitContainers[i])
	}
	if len(missing) == 0 {
		return nil
	}
	names := make([]corev1.ResourceName, 0, len(missing))
	for n := range missing {
		names = append(names, n)
	}
	sortNames(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s for: %s", n, strings.Join(sets.List(missing[n]), ","))
	}
	return fmt.Errorf("must specify %s", strings.Join(parts, "; "))
}
