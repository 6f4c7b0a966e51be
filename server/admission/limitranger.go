package admission

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/orch-dev/orch/server/admission/quota"
	"github.com/orch-dev/orch/server/registry"
)

// LimitRangerAnnotation records on a pod which defaults LimitRanger set.
const LimitRangerAnnotation = "kubernetes.io/limit-ranger"

// LimitRangeLister reads the LimitRanges of a namespace.
// informer.Lister[*corev1.LimitRange] is one.
type LimitRangeLister interface {
	List(namespace string, sel labels.Selector) []*corev1.LimitRange
}

// LimitRanger is the LimitRange admission check, as Kubernetes'
// plugin/pkg/admission/limitranger: new pods get the default requests and
// limits of their namespace's LimitRanges (type Container) where they set
// none, then pods and claims are checked against the ranges' min, max and
// maxLimitRequestRatio; a violation is refused with 403 and Kubernetes'
// message ("Maximum memory usage per Container is 1Gi, but limit is 2Gi.").
type LimitRanger struct {
	ranges LimitRangeLister
}

// NewLimitRanger returns LimitRange admission reading ranges through lister.
func NewLimitRanger(lister LimitRangeLister) *LimitRanger {
	return &LimitRanger{ranges: lister}
}

var (
	podsResource   = schema.GroupResource{Resource: "pods"}
	claimsResource = schema.GroupResource{Resource: "persistentvolumeclaims"}
)

// Attach installs the check on the pods (create) and persistentvolumeclaims
// (create and update) entries, before the hooks they already have; other
// resources are left alone. Attach it after Quota so that quota sees the
// defaulted requests.
func (l *LimitRanger) Attach(r *registry.Resource) {
	served := r.GroupVersionResource().GroupResource()
	switch r.StorageResource().GroupVersionResource().GroupResource() {
	case podsResource:
		chainCreate(r, func(_ context.Context, obj runtime.Object) (registry.FinishFunc, error) {
			pod, ok := obj.(*corev1.Pod)
			if !ok {
				return nil, nil
			}
			return nil, l.admitPod(served, pod)
		})
	case claimsResource:
		check := func(obj runtime.Object) error {
			pvc, ok := obj.(*corev1.PersistentVolumeClaim)
			if !ok {
				return nil
			}
			return l.admitClaim(served, pvc)
		}
		chainCreate(r, func(_ context.Context, obj runtime.Object) (registry.FinishFunc, error) {
			return nil, check(obj)
		})
		chainUpdate(r, func(_ context.Context, obj, _ runtime.Object) (registry.FinishFunc, error) {
			return nil, check(obj)
		})
	}
}

func (l *LimitRanger) list(ns string) []*corev1.LimitRange {
	ranges := l.ranges.List(ns, labels.Everything())
	slices.SortFunc(ranges, func(a, b *corev1.LimitRange) int { return strings.Compare(a.Name, b.Name) })
	return ranges
}

// admitPod applies defaults to pod and checks it.
func (l *LimitRanger) admitPod(served schema.GroupResource, pod *corev1.Pod) error {
	ranges := l.list(pod.Namespace)
	if len(ranges) == 0 {
		return nil
	}
	var defaulted []int // indexes into all containers (init first) that got defaults
	for _, lr := range ranges {
		defaulted = append(defaulted, MergePodDefaults(pod, lr)...)
	}
	slices.Sort(defaulted)
	defaulted = slices.Compact(defaulted)
	for _, lr := range ranges {
		if err := ValidatePod(pod, lr); err != nil {
			return apierrors.NewForbidden(served, pod.Name, err)
		}
	}
	// Defaults are applied after the pod was validated: make sure they did
	// not leave a request above its limit, as validation would have said.
	if errs := validateDefaulted(pod, defaulted); len(errs) > 0 {
		return apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, pod.Name, errs)
	}
	return nil
}

// admitClaim checks a claim's storage request against the ranges of type
// PersistentVolumeClaim.
func (l *LimitRanger) admitClaim(served schema.GroupResource, pvc *corev1.PersistentVolumeClaim) error {
	for _, lr := range l.list(pvc.Namespace) {
		if err := ValidateClaim(pvc, lr); err != nil {
			return apierrors.NewForbidden(served, pvc.Name, err)
		}
	}
	return nil
}

// MergePodDefaults sets, on every container and init container of pod, the
// defaultRequest and default (limit) of lr's Container limits it does not
// set, and records what it set in the kubernetes.io/limit-ranger
// annotation. It returns the indexes of the containers it changed,
// counting init containers first.
func MergePodDefaults(pod *corev1.Pod, lr *corev1.LimitRange) []int {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	for _, item := range lr.Spec.Limits {
		if item.Type != corev1.LimitTypeContainer {
			continue
		}
		for k, v := range item.DefaultRequest {
			requests[k] = v.DeepCopy()
		}
		for k, v := range item.Default {
			limits[k] = v.DeepCopy()
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return nil
	}
	var notes []string
	var changed []int
	merge := func(c *corev1.Container, kind string, index int) {
		setReq := fill(&c.Resources.Requests, requests)
		setLim := fill(&c.Resources.Limits, limits)
		if len(setReq) > 0 {
			notes = append(notes, strings.Join(setReq, ", ")+" request for "+kind+" "+c.Name)
		}
		if len(setLim) > 0 {
			notes = append(notes, strings.Join(setLim, ", ")+" limit for "+kind+" "+c.Name)
		}
		if len(setReq)+len(setLim) > 0 {
			changed = append(changed, index)
		}
	}
	for i := range pod.Spec.InitContainers {
		merge(&pod.Spec.InitContainers[i], "init container", i)
	}
	for i := range pod.Spec.Containers {
		merge(&pod.Spec.Containers[i], "container", len(pod.Spec.InitContainers)+i)
	}
	if len(notes) > 0 {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[LimitRangerAnnotation] = "LimitRanger plugin set: " + strings.Join(notes, "; ")
	}
	return changed
}

// fill sets the entries of defaults that *list lacks and returns their
// names, sorted.
func fill(list *corev1.ResourceList, defaults corev1.ResourceList) []string {
	var set []string
	for k, v := range defaults {
		if _, ok := (*list)[k]; ok {
			continue
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[k] = v.DeepCopy()
		set = append(set, string(k))
	}
	sort.Strings(set)
	return set
}

// ValidatePod checks pod against lr's Container limits (each container and
// init container) and Pod limits (the pod's effective requests and limits).
// The error aggregates Kubernetes' messages.
func ValidatePod(pod *corev1.Pod, lr *corev1.LimitRange) error {
	var errs []error
	for _, item := range lr.Spec.Limits {
		switch item.Type {
		case corev1.LimitTypeContainer:
			for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
				for i := range cs {
					errs = append(errs, checkItem(item, cs[i].Resources.Requests, cs[i].Resources.Limits)...)
				}
			}
		case corev1.LimitTypePod:
			errs = append(errs, checkItem(item, quota.PodRequests(pod), quota.PodLimits(pod))...)
		}
	}
	return utilerrors.NewAggregate(errs)
}

// ValidateClaim checks a claim's requests against lr's
// PersistentVolumeClaim min and max.
func ValidateClaim(pvc *corev1.PersistentVolumeClaim, lr *corev1.LimitRange) error {
	var errs []error
	for _, item := range lr.Spec.Limits {
		if item.Type != corev1.LimitTypePersistentVolumeClaim {
			continue
		}
		requests := pvc.Spec.Resources.Requests
		for _, name := range quota.ResourceNames(item.Min) {
			if err := minConstraint(item.Type, name, item.Min[name], requests, nil); err != nil {
				errs = append(errs, err)
			}
		}
		for _, name := range quota.ResourceNames(item.Max) {
			if err := maxRequestConstraint(item.Type, name, item.Max[name], requests); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return utilerrors.NewAggregate(errs)
}

// checkItem applies one LimitRange item's min, max and ratio to one set of
// requests and limits, resources in name order.
func checkItem(item corev1.LimitRangeItem, requests, limits corev1.ResourceList) []error {
	var errs []error
	for _, name := range quota.ResourceNames(item.Min) {
		if err := minConstraint(item.Type, name, item.Min[name], requests, limits); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range quota.ResourceNames(item.Max) {
		if err := maxConstraint(item.Type, name, item.Max[name], requests, limits); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range quota.ResourceNames(item.MaxLimitRequestRatio) {
		if err := ratioConstraint(item.Type, name, item.MaxLimitRequestRatio[name], requests, limits); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// values returns request, limit and bound at a common scale: milli-units
// when none overflows, else units.
func values(req, lim, bound resource.Quantity) (int64, int64, int64) {
	r, l, b := req.Value(), lim.Value(), bound.Value()
	if r <= resource.MaxMilliValue && l <= resource.MaxMilliValue && b <= resource.MaxMilliValue {
		return req.MilliValue(), lim.MilliValue(), bound.MilliValue()
	}
	return r, l, b
}

func minConstraint(t corev1.LimitType, name corev1.ResourceName, bound resource.Quantity, requests, limits corev1.ResourceList) error {
	req, hasReq := requests[name]
	lim, hasLim := limits[name]
	r, l, b := values(req, lim, bound)
	switch {
	case !hasReq:
		return fmt.Errorf("Minimum %s usage per %s is %s.  No request is specified.", name, t, bound.String())
	case r < b:
		return fmt.Errorf("Minimum %s usage per %s is %s, but request is %s.", name, t, bound.String(), req.String())
	case hasLim && l < b:
		return fmt.Errorf("Minimum %s usage per %s is %s, but limit is %s.", name, t, bound.String(), lim.String())
	}
	return nil
}

func maxConstraint(t corev1.LimitType, name corev1.ResourceName, bound resource.Quantity, requests, limits corev1.ResourceList) error {
	req, hasReq := requests[name]
	lim, hasLim := limits[name]
	r, l, b := values(req, lim, bound)
	switch {
	case !hasLim:
		return fmt.Errorf("Maximum %s usage per %s is %s.  No limit is specified.", name, t, bound.String())
	case l > b:
		return fmt.Errorf("Maximum %s usage per %s is %s, but limit is %s.", name, t, bound.String(), lim.String())
	case hasReq && r > b:
		return fmt.Errorf("Maximum %s usage per %s is %s, but request is %s.", name, t, bound.String(), req.String())
	}
	return nil
}

// maxRequestConstraint is maxConstraint for kinds that only have requests
// (claims).
func maxRequestConstraint(t corev1.LimitType, name corev1.ResourceName, bound resource.Quantity, requests corev1.ResourceList) error {
	req, hasReq := requests[name]
	r, _, b := values(req, resource.Quantity{}, bound)
	switch {
	case !hasReq:
		return fmt.Errorf("Maximum %s usage per %s is %s.  No request is specified.", name, t, bound.String())
	case r > b:
		return fmt.Errorf("Maximum %s usage per %s is %s, but request is %s.", name, t, bound.String(), req.String())
	}
	return nil
}

func ratioConstraint(t corev1.LimitType, name corev1.ResourceName, bound resource.Quantity, requests, limits corev1.ResourceList) error {
	req, hasReq := requests[name]
	lim, hasLim := limits[name]
	r, l, _ := values(req, lim, bound)
	if !hasReq || r == 0 {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but no request is specified or request is 0.", name, t, bound.String())
	}
	if !hasLim || l == 0 {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but no limit is specified or limit is 0.", name, t, bound.String())
	}
	observed := float64(l) / float64(r)
	shown, max := observed, float64(bound.Value())
	if bound.Value() <= resource.MaxMilliValue {
		observed *= 1000
		max = float64(bound.MilliValue())
	}
	if observed > max {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but provided ratio is %f.", name, t, bound.String(), shown)
	}
	return nil
}

// validateDefaulted reports requests above limits in the containers that
// received defaults, with the API validation's message.
func validateDefaulted(pod *corev1.Pod, changed []int) field.ErrorList {
	var errs field.ErrorList
	nInit := len(pod.Spec.InitContainers)
	for _, i := range changed {
		c, path := (*corev1.Container)(nil), (*field.Path)(nil)
		if i < nInit {
			c, path = &pod.Spec.InitContainers[i], field.NewPath("spec", "initContainers").Index(i)
		} else {
			c, path = &pod.Spec.Containers[i-nInit], field.NewPath("spec", "containers").Index(i-nInit)
		}
		reqPath := path.Child("resources", "requests")
		for _, name := range quota.ResourceNames(c.Resources.Requests) {
			req := c.Resources.Requests[name]
			if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
				errs = append(errs, field.Invalid(reqPath.Key(string(name)), req.String(),
					fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
			}
		}
	}
	return errs
}
