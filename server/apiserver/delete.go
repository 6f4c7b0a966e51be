package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// Finalizers the garbage collector acts on.
const (
	finalizerOrphan     = metav1.FinalizerOrphanDependents
	finalizerForeground = metav1.FinalizerDeleteDependents
)

// parseDeleteOptions reads DeleteOptions from the body (JSON or protobuf)
// and the query, as kubectl and client-go send them.
func (s *Server) parseDeleteOptions(r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	body, err := s.readBody(r)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch ct {
		case mediaProtobuf:
			gvk := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
			if _, _, err := s.codecs.proto.Decode(body, &gvk, opts); err != nil {
				return nil, apierrors.NewBadRequest("invalid DeleteOptions: " + err.Error())
			}
		default:
			if err := json.Unmarshal(body, opts); err != nil {
				return nil, apierrors.NewBadRequest("invalid DeleteOptions: " + err.Error())
			}
		}
	}
	q := r.URL.Query()
	if v := q.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid gracePeriodSeconds %q", v))
		}
		opts.GracePeriodSeconds = &n
	}
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("orphanDependents"); v != "" {
		b := isTrue(v)
		opts.OrphanDependents = &b
	}
	if len(q["dryRun"]) > 0 {
		opts.DryRun = q["dryRun"]
	}
	for _, d := range opts.DryRun {
		if d != metav1.DryRunAll {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("unsupported dryRun value %q (only \"All\" is supported)", d))
		}
	}
	if opts.OrphanDependents != nil && opts.PropagationPolicy != nil {
		return nil, apierrors.NewBadRequest("propagationPolicy and orphanDependents are mutually exclusive")
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: Unsupported value: %q: supported values: \"Foreground\", \"Background\", \"Orphan\"", *opts.PropagationPolicy))
		}
	}
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		one := int64(1)
		opts.GracePeriodSeconds = &one
	}
	return opts, nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	opts, err := s.parseDeleteOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, deleted, err := s.deleteObject(ctx, res, ns, name, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeDeleteResult(w, r, res, obj, deleted)
}

// writeDeleteResult answers a delete as Kubernetes does: 200 with the
// object while it waits (grace period, finalizers), else a Success Status
// naming it (pods and namespaces return the object).
func (s *Server) writeDeleteResult(w http.ResponseWriter, r *http.Request, res *registry.Resource, obj runtime.Object, deleted bool) {
	if !deleted || res.GracefulDelete != nil {
		s.writeResourceObject(w, r, res, http.StatusOK, obj)
		return
	}
	m, _ := meta.Accessor(obj)
	st := &metav1.Status{
		Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{
			Name: m.GetName(), Group: res.GroupVersion.Group, Kind: res.Name, UID: m.GetUID(),
		},
	}
	st.Kind, st.APIVersion = "Status", "v1"
	s.codecs.writeObject(w, r, http.StatusOK, st)
}

// deleteObject deletes one object: preconditions, graceful deletion,
// garbage-collection finalizers, then removal. deleted is false while the
// object stays (with a deletionTimestamp).
func (s *Server) deleteObject(ctx context.Context, res *registry.Resource, ns, name string, opts *metav1.DeleteOptions) (runtime.Object, bool, error) {
	gr := res.GroupVersionResource().GroupResource()
	key := objectKey(res, ns, name)
	dryRun := len(opts.DryRun) > 0
	for attempt := 0; ; attempt++ {
		kv, err := s.store.Get(ctx, key)
		if err != nil {
			return nil, false, storeError(err, gr, name)
		}
		obj, err := s.decodeStored(res, kv)
		if err != nil {
			return nil, false, apierrors.NewInternalError(err)
		}
		m, _ := meta.Accessor(obj)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != m.GetUID() {
				return nil, false, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
			}
		}

		changed := false
		pending := false
		if res.GracefulDelete != nil {
			before := obj.DeepCopyObject()
			pending = res.GracefulDelete(obj, opts.GracePeriodSeconds, time.Now())
			changed = !equalObjects(before, obj)
		}
		if updateGCFinalizers(m, opts) {
			changed = true
		}
		if len(m.GetFinalizers()) > 0 {
			pending = true
			if m.GetDeletionTimestamp() == nil {
				now := metav1.NewTime(time.Now())
				m.SetDeletionTimestamp(&now)
				zero := int64(0)
				m.SetDeletionGracePeriodSeconds(&zero)
				changed = true
			}
		}

		if pending {
			if !changed || dryRun {
				return obj, false, nil
			}
			data, err := s.encodeStored(res, obj)
			if err != nil {
				return nil, false, apierrors.NewInternalError(err)
			}
			nkv, err := s.store.Update(ctx, key, data, kv.ModRevision, store.WriteOptions{})
			if errors.Is(err, store.ErrConflict) && attempt < maxUpdateRetries {
				continue
			}
			if err != nil {
				return nil, false, storeError(err, gr, name)
			}
			m.SetResourceVersion(strconv.FormatInt(nkv.ModRevision, 10))
			return obj, false, nil
		}

		if dryRun {
			return obj, true, nil
		}
		dkv, err := s.store.Delete(ctx, key, kv.ModRevision)
		if errors.Is(err, store.ErrConflict) && attempt < maxUpdateRetries {
			continue
		}
		if err != nil {
			return nil, false, storeError(err, gr, name)
		}
		s.afterDelete(ctx, res, obj)
		m.SetResourceVersion(strconv.FormatInt(dkv.ModRevision, 10))
		return obj, true, nil
	}
}

// updateGCFinalizers sets the orphan/foreground finalizers the propagation
// policy asks for. It reports whether the finalizers changed.
func updateGCFinalizers(m metav1.Object, opts *metav1.DeleteOptions) bool {
	var policy metav1.DeletionPropagation
	switch {
	case opts.PropagationPolicy != nil:
		policy = *opts.PropagationPolicy
	case opts.OrphanDependents != nil && *opts.OrphanDependents:
		policy = metav1.DeletePropagationOrphan
	case opts.OrphanDependents != nil:
		policy = metav1.DeletePropagationBackground
	default:
		// No policy given: keep the finalizers an earlier delete set.
		return false
	}
	want := map[string]bool{
		finalizerOrphan:     policy == metav1.DeletePropagationOrphan,
		finalizerForeground: policy == metav1.DeletePropagationForeground,
	}
	var out []string
	changed := false
	for _, f := range m.GetFinalizers() {
		if keep, gc := want[f]; gc {
			if !keep {
				changed = true
				continue
			}
			delete(want, f)
		}
		out = append(out, f)
	}
	for _, f := range []string{finalizerOrphan, finalizerForeground} {
		if want[f] {
			out = append(out, f)
			changed = true
		}
	}
	if changed {
		m.SetFinalizers(out)
	}
	return changed
}

func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	opts, err := s.parseDeleteOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sel, err := parseSelection(r, res)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	q.Del("limit")
	q.Del("continue")
	r.URL.RawQuery = q.Encode()
	lq, err := s.parseListQuery(r, res, ns)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	lr, err := s.listObjects(ctx, res, lq, sel)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list := res.NewList()
	var items []runtime.Object
	for _, kv := range lr.kvs {
		obj, err := s.decodeStored(res, kv)
		if err != nil {
			s.writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		m, _ := meta.Accessor(obj)
		out, _, err := s.deleteObject(ctx, res, m.GetNamespace(), m.GetName(), opts)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		items = append(items, out)
	}
	_ = meta.SetList(list, items)
	list.GetObjectKind().SetGroupVersionKind(res.GroupVersion.WithKind(res.Kind + "List"))
	s.writeTransformed(w, mediaType{Type: mediaJSON}, http.StatusOK, list)
}

func equalObjects(a, b runtime.Object) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
