package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

func (s *Server) serveSubresource(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo) {
	if !res.HasSubresource(ri.Subresource) || ri.Name == "" {
		s.writeError(w, r, errNotFoundGeneric)
		return
	}
	switch ri.Subresource {
	case "status":
		switch ri.Verb {
		case "get":
			s.get(w, r, res, ri.Namespace, ri.Name)
		case "update":
			s.update(w, r, res, ri.Namespace, ri.Name, "status")
		case "patch":
			s.patch(w, r, res, ri.Namespace, ri.Name, "status")
		default:
			s.writeError(w, r, apierrors.NewMethodNotSupported(res.GroupVersionResource().GroupResource(), ri.Verb))
		}
	case "scale":
		s.serveScale(w, r, res, ri)
	case "binding":
		if ri.Verb != "create" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods/binding"}, ri.Verb))
			return
		}
		s.bind(w, r, res, ri.Namespace, ri.Name)
	case "eviction":
		if ri.Verb != "create" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "pods/eviction"}, ri.Verb))
			return
		}
		s.evict(w, r, res, ri.Namespace, ri.Name)
	case "log":
		s.serveLog(w, r, res, ri)
	case "exec", "attach", "portforward":
		s.serveNodeStream(w, r, res, ri)
	default:
		if action, ok := res.Actions[ri.Subresource]; ok {
			s.serveAction(w, r, res, ri, action)
			return
		}
		s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("%s/%s is not available yet: no agent connection", res.Name, ri.Subresource)))
	}
}

// Scale subresource: autoscaling/v1 Scale over spec.replicas.

func (s *Server) scaleOf(res *registry.Resource, obj runtime.Object) (*autoscalingv1.Scale, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	m, _ := meta.Accessor(obj)
	sc := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{
		Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
		ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp(),
	}}
	sc.SetGroupVersionKind(autoscalingv1.SchemeGroupVersion.WithKind("Scale"))
	replicas, found, _ := unstructured.NestedInt64(u, "spec", "replicas")
	if !found {
		replicas = 1
	}
	sc.Spec.Replicas = int32(replicas)
	statusReplicas, _, _ := unstructured.NestedInt64(u, "status", "replicas")
	sc.Status.Replicas = int32(statusReplicas)
	if sel, ok, _ := unstructured.NestedMap(u, "spec", "selector"); ok {
		if _, isLabelSelector := sel["matchLabels"]; isLabelSelector || sel["matchExpressions"] != nil {
			var ls metav1.LabelSelector
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, &ls); err == nil {
				if parsed, err := metav1.LabelSelectorAsSelector(&ls); err == nil {
					sc.Status.Selector = parsed.String()
				}
			}
		} else {
			set := labels.Set{}
			for k, v := range sel {
				if str, ok := v.(string); ok {
					set[k] = str
				}
			}
			sc.Status.Selector = labels.SelectorFromSet(set).String()
		}
	}
	return sc, nil
}

func setReplicas(obj runtime.Object, replicas int32) (runtime.Object, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	if err := unstructured.SetNestedField(u, int64(replicas), "spec", "replicas"); err != nil {
		return nil, err
	}
	out := obj.DeepCopyObject()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	gr := res.GroupVersionResource().GroupResource()
	if ri.Verb == "get" {
		kv, err := s.store.Get(ctx, objectKey(res, ri.Namespace, ri.Name))
		if err != nil {
			s.writeError(w, r, storeError(err, gr, ri.Name))
			return
		}
		obj, err := s.decodeStored(res, kv)
		if err == nil {
			var sc *autoscalingv1.Scale
			if sc, err = s.scaleOf(res, obj); err == nil {
				s.codecs.writeObject(w, r, http.StatusOK, sc)
				return
			}
		}
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	if ri.Verb != "update" && ri.Verb != "patch" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: gr.Group, Resource: gr.Resource + "/scale"}, ri.Verb))
		return
	}
	opts, err := s.parseWriteOptions(r, "scale")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	scaleGVK := autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	var requested *autoscalingv1.Scale
	if ri.Verb == "update" {
		requested = &autoscalingv1.Scale{}
		if _, err := s.codecs.decodeBody(r, body, scaleGVK, requested, opts.validation); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	var pt types.PatchType
	if ri.Verb == "patch" {
		pt = types.PatchType(mediaTypeOnly(r.Header.Get("Content-Type")))
		if pt == types.ApplyYAMLPatchType || s.fields == nil {
			s.writeError(w, r, unsupportedMediaType(string(pt)))
			return
		}
	}
	result, err := s.guaranteedUpdate(ctx, res, ri.Namespace, ri.Name, false, opts, func(current runtime.Object) (runtime.Object, error) {
		if current == nil {
			return nil, apierrors.NewNotFound(gr, ri.Name)
		}
		sc, err := s.scaleOf(res, current)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		want := requested
		if want == nil {
			patched, _, err := s.fields.Patch(sc, pt, body, opts.validation)
			if err != nil {
				return nil, err
			}
			want = patched.(*autoscalingv1.Scale)
		}
		if want.Spec.Replicas < 0 {
			return nil, apierrors.NewInvalid(scaleGVK.GroupKind(), ri.Name, fieldErrors("spec.replicas", "", "must be greater than or equal to 0"))
		}
		out, err := setReplicas(current, want.Spec.Replicas)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		m, _ := meta.Accessor(out)
		m.SetResourceVersion(want.ResourceVersion)
		if want.ResourceVersion == sc.ResourceVersion {
			m.SetResourceVersion("")
		}
		return out, nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sc, err := s.scaleOf(res, result.obj)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	s.codecs.writeObject(w, r, http.StatusOK, sc)
}

func mediaTypeOnly(ct string) string {
	for i := 0; i < len(ct); i++ {
		if ct[i] == ';' {
			return ct[:i]
		}
	}
	return ct
}

// bind assigns a pod to a node (pods/binding), as the scheduler does.
func (s *Server) bind(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	opts, err := s.parseWriteOptions(r, "binding")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	binding := &corev1.Binding{}
	if _, err := s.codecs.decodeBody(r, body, corev1.SchemeGroupVersion.WithKind("Binding"), binding, opts.validation); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.bindPod(ctx, res, ns, name, binding, opts); err != nil {
		s.writeError(w, r, err)
		return
	}
	st := &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated}
	s.codecs.writeObject(w, r, http.StatusCreated, st)
}

// bindPod assigns a pod to a node (pods/binding), for the HTTP handler and
// the in-process API alike.
func (s *Server) bindPod(ctx context.Context, res *registry.Resource, ns, name string, binding *corev1.Binding, opts writeOptions) error {
	if binding.Name != "" && binding.Name != name {
		return apierrors.NewBadRequest("the name of the binding does not match the pod name")
	}
	if binding.Target.Name == "" {
		return apierrors.NewInvalid(schema.GroupKind{Kind: "Binding"}, name, fieldErrors("target.name", "", "a node name is required"))
	}
	// Kubernetes' binding writes the pod in storage, below the field
	// manager: a bound pod's managed fields do not change (and no binding
	// pays for a typed diff of the whole pod).
	opts.unmanaged = true
	_, err := s.guaranteedUpdate(ctx, res, ns, name, false, opts, func(current runtime.Object) (runtime.Object, error) {
		pod, ok := current.(*corev1.Pod)
		if !ok {
			return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
		}
		pod = pod.DeepCopy()
		if binding.UID != "" && binding.UID != pod.UID {
			return nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods/binding"}, name, fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", binding.UID, pod.UID))
		}
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods/binding"}, name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods/binding"}, name, fmt.Errorf("pod %s is already assigned to node %q", name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = binding.Target.Name
		setPodCondition(&pod.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(time.Now())})
		pod.ResourceVersion = ""
		return pod, nil
	})
	return err
}

func setPodCondition(status *corev1.PodStatus, c corev1.PodCondition) {
	for i := range status.Conditions {
		if status.Conditions[i].Type == c.Type {
			if status.Conditions[i].Status == c.Status {
				c.LastTransitionTime = status.Conditions[i].LastTransitionTime
			}
			status.Conditions[i] = c
			return
		}
	}
	status.Conditions = append(status.Conditions, c)
}

// evict deletes a pod unless that would violate a PodDisruptionBudget
// (pods/eviction), as `kubectl drain` uses it.
func (s *Server) evict(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	body, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	eviction := &policyv1.Eviction{}
	if _, err := s.codecs.decodeBody(r, body, policyv1.SchemeGroupVersion.WithKind("Eviction"), eviction, validationIgnore); err != nil {
		// kubectl may send policy/v1beta1 Evictions; accept their shape.
		eviction = &policyv1.Eviction{}
		if _, err2 := s.codecs.decodeJSON(body, schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, eviction, validationIgnore); err2 != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if eviction.Name != "" && eviction.Name != name {
		s.writeError(w, r, apierrors.NewBadRequest("name in URL does not match name in Eviction object"))
		return
	}
	if err := s.evictPod(ctx, res, ns, name, eviction.DeleteOptions); err != nil {
		s.writeError(w, r, err)
		return
	}
	st := &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated}
	s.codecs.writeObject(w, r, http.StatusCreated, st)
}

// evictPod deletes a pod if its disruption budget allows it, as
// Kubernetes' eviction subresource (pkg/registry/core/pod/storage/eviction.go).
func (s *Server) evictPod(ctx context.Context, res *registry.Resource, ns, name string, opts *metav1.DeleteOptions) error {
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	dryRun := len(opts.DryRun) > 0
	kv, err := s.store.Get(ctx, objectKey(res, ns, name))
	if err != nil {
		return storeError(err, res.GroupVersionResource().GroupResource(), name)
	}
	obj, err := s.decodeStored(res, kv)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	pod := obj.(*corev1.Pod)
	// withPrecondition deletes only the pod that was checked.
	withPrecondition := func() *metav1.DeleteOptions {
		o := opts.DeepCopy()
		if o.Preconditions == nil || o.Preconditions.ResourceVersion == nil {
			if o.Preconditions == nil {
				o.Preconditions = &metav1.Preconditions{}
			}
			rv := strconv.FormatInt(kv.ModRevision, 10)
			o.Preconditions.ResourceVersion = &rv
		}
		return o
	}
	del := func(o *metav1.DeleteOptions) error {
		_, _, err := s.deleteObject(ctx, res, ns, name, o)
		return err
	}
	switch {
	case pod.DeletionTimestamp != nil, pod.Status.Phase == corev1.PodSucceeded, pod.Status.Phase == corev1.PodFailed:
		return del(opts)
	case pod.Status.Phase == corev1.PodPending:
		// A pod that never ran disrupts nothing.
		return del(withPrecondition())
	}

	pdbs, err := s.podDisruptionBudgets(ctx, pod)
	if err != nil {
		return err
	}
	switch len(pdbs) {
	case 0:
		return del(opts)
	case 1:
	default:
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError,
			Message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}}
	}
	pdb := pdbs[0]
	if !podIsReady(pod) {
		policy := policyv1.IfHealthyBudget
		if pdb.Spec.UnhealthyPodEvictionPolicy != nil {
			policy = *pdb.Spec.UnhealthyPodEvictionPolicy
		}
		if policy == policyv1.AlwaysAllow || pdb.Status.CurrentHealthy >= pdb.Status.DesiredHealthy && pdb.Status.DesiredHealthy > 0 {
			err := del(withPrecondition())
			if apierrors.IsConflict(err) && (opts.Preconditions == nil || opts.Preconditions.ResourceVersion == nil) {
				return budgetBusy(pdb.Name)
			}
			return err
		}
	}
	if err := s.takeDisruption(ctx, pdb.Namespace, pdb.Name, pod.Name, dryRun); err != nil {
		return err
	}
	return del(opts)
}

func podIsReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podDisruptionBudgets are the budgets whose selector matches pod (an
// empty selector matches every pod of the namespace).
func (s *Server) podDisruptionBudgets(ctx context.Context, pod *corev1.Pod) ([]*policyv1.PodDisruptionBudget, error) {
	pdbRes := s.table.Lookup(policyv1.SchemeGroupVersion, "poddisruptionbudgets")
	if pdbRes == nil {
		return nil, nil
	}
	page, err := s.store.List(ctx, listPrefix(pdbRes, pod.Namespace), store.ListOptions{})
	if err != nil {
		return nil, storeError(err, pdbRes.GroupVersionResource().GroupResource(), "")
	}
	var out []*policyv1.PodDisruptionBudget
	for i := range page.KVs {
		obj, err := s.decodeStored(pdbRes, &page.KVs[i])
		if err != nil {
			continue
		}
		pdb := obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, pdb)
	}
	return out, nil
}

// budgetBusy is the answer while a budget is being updated by others.
func budgetBusy(name string) error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
		Type:    policyv1.DisruptionBudgetCause,
		Message: fmt.Sprintf("The disruption budget %s is still being processed by the server.", name),
	})
	return err
}

// maxDisruptedPods bounds the evictions a budget holds unconfirmed by the
// disruption controller.
const maxDisruptedPods = 2000

// takeDisruption checks a budget and takes one disruption from it
// (checkAndDecrement upstream), retrying on write conflicts as concurrent
// evictions (kubectl drain sends them in parallel) race for the same
// budget.
func (s *Server) takeDisruption(ctx context.Context, ns, pdbName, podName string, dryRun bool) error {
	pdbRes := s.table.Lookup(policyv1.SchemeGroupVersion, "poddisruptionbudgets")
	gr := pdbRes.GroupVersionResource().GroupResource()
	key := objectKey(pdbRes, ns, pdbName)
	for attempt := 0; attempt < 20; attempt++ {
		kv, err := s.store.Get(ctx, key)
		if err != nil {
			return storeError(err, gr, pdbName)
		}
		obj, err := s.decodeStored(pdbRes, kv)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		pdb := obj.(*policyv1.PodDisruptionBudget)
		switch {
		case pdb.Status.ObservedGeneration < pdb.Generation:
			return budgetBusy(pdb.Name)
		case pdb.Status.DisruptionsAllowed < 0:
			return apierrors.NewForbidden(gr, pdb.Name, errors.New("pdb disruptions allowed is negative"))
		case len(pdb.Status.DisruptedPods) > maxDisruptedPods:
			return apierrors.NewForbidden(gr, pdb.Name, errors.New("DisruptedPods map too big - too many evictions not confirmed by PDB controller"))
		case pdb.Status.DisruptionsAllowed == 0:
			err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
			err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
				Type:    policyv1.DisruptionBudgetCause,
				Message: fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, pdb.Status.DesiredHealthy, pdb.Status.CurrentHealthy),
			})
			return err
		}
		if dryRun {
			return nil
		}
		pdb.Status.DisruptionsAllowed--
		if pdb.Status.DisruptedPods == nil {
			pdb.Status.DisruptedPods = map[string]metav1.Time{}
		}
		pdb.Status.DisruptedPods[podName] = metav1.NewTime(time.Now())
		if pdb.Status.DisruptionsAllowed == 0 {
			setPDBCondition(&pdb.Status, metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse,
				Reason: policyv1.InsufficientPodsReason, ObservedGeneration: pdb.Status.ObservedGeneration})
		}
		data, err := s.encodeStored(pdbRes, pdb)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		_, err = s.store.Update(ctx, key, data, kv.ModRevision, store.WriteOptions{})
		if errors.Is(err, store.ErrConflict) {
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-ctx.Done():
				return apierrors.NewTimeoutError(ctx.Err().Error(), 10)
			}
		}
		if err != nil {
			return storeError(err, gr, pdb.Name)
		}
		return nil
	}
	return apierrors.NewTimeoutError(fmt.Sprintf("couldn't update PodDisruptionBudget %q due to conflicts", pdbName), 10)
}

func setPDBCondition(status *policyv1.PodDisruptionBudgetStatus, c metav1.Condition) {
	c.LastTransitionTime = metav1.NewTime(time.Now())
	for i := range status.Conditions {
		if status.Conditions[i].Type == c.Type {
			if status.Conditions[i].Status == c.Status {
				c.LastTransitionTime = status.Conditions[i].LastTransitionTime
			}
			status.Conditions[i] = c
			return
		}
	}
	status.Conditions = append(status.Conditions, c)
}
