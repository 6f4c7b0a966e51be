package apiserver

import (
	"context"
	"fmt"
	"net/http"
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
	default:
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
	kv, err := s.store.Get(ctx, objectKey(res, ns, name))
	if err != nil {
		s.writeError(w, r, storeError(err, res.GroupVersionResource().GroupResource(), name))
		return
	}
	obj, err := s.decodeStored(res, kv)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	pod := obj.(*corev1.Pod)
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if !terminal && pod.DeletionTimestamp == nil {
		if err := s.takeDisruption(ctx, pod); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	opts := eviction.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	if _, _, err := s.deleteObject(ctx, res, ns, name, opts); err != nil {
		s.writeError(w, r, err)
		return
	}
	st := &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated}
	s.codecs.writeObject(w, r, http.StatusCreated, st)
}

// takeDisruption checks the pod's PodDisruptionBudgets and consumes one
// allowed disruption from each.
func (s *Server) takeDisruption(ctx context.Context, pod *corev1.Pod) error {
	pdbRes := s.table.Lookup(policyv1.SchemeGroupVersion, "poddisruptionbudgets")
	if pdbRes == nil {
		return nil
	}
	page, err := s.store.List(ctx, listPrefix(pdbRes, pod.Namespace), store.ListOptions{})
	if err != nil {
		return storeError(err, pdbRes.GroupVersionResource().GroupResource(), "")
	}
	for i := range page.KVs {
		obj, err := s.decodeStored(pdbRes, &page.KVs[i])
		if err != nil {
			continue
		}
		pdb := obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		if pdb.Status.ObservedGeneration < pdb.Generation || pdb.Status.DisruptionsAllowed <= 0 {
			err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
			err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
				Type:    policyv1.DisruptionBudgetCause,
				Message: fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, pdb.Status.DesiredHealthy, pdb.Status.CurrentHealthy),
			})
			return err
		}
		pdb.Status.DisruptionsAllowed--
		if pdb.Status.DisruptedPods == nil {
			pdb.Status.DisruptedPods = map[string]metav1.Time{}
		}
		pdb.Status.DisruptedPods[pod.Name] = metav1.NewTime(time.Now())
		data, err := s.encodeStored(pdbRes, pdb)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if _, err := s.store.Update(ctx, page.KVs[i].Key, data, page.KVs[i].ModRevision, store.WriteOptions{}); err != nil {
			return storeError(err, pdbRes.GroupVersionResource().GroupResource(), pdb.Name)
		}
	}
	return nil
}
