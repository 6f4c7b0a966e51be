package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// writeOptions are the query parameters every write takes.
type writeOptions struct {
	dryRun       bool
	validation   fieldValidation
	fieldManager string
	subresource  string
	// applied: the object is the result of a server-side apply, which has
	// recorded its managed fields already.
	applied bool
	// unmanaged: the server writes the object itself below the field
	// manager, recording no managed fields, as Kubernetes' pods/binding
	// does (BindingREST updates the pod in storage directly).
	unmanaged bool
}

func (s *Server) parseWriteOptions(r *http.Request, subresource string) (writeOptions, error) {
	q := r.URL.Query()
	opts := writeOptions{subresource: subresource}
	for _, d := range q["dryRun"] {
		if d != "All" {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("unsupported dryRun value %q (only \"All\" is supported)", d))
		}
		opts.dryRun = true
	}
	fv, err := parseFieldValidation(r)
	if err != nil {
		return opts, err
	}
	opts.validation = fv
	opts.fieldManager = q.Get("fieldManager")
	if len(opts.fieldManager) > 128 {
		return opts, apierrors.NewBadRequest("fieldManager: Too long: may not be more than 128 bytes")
	}
	if opts.fieldManager == "" {
		// As Kubernetes: the user agent up to the first slash.
		opts.fieldManager = strings.SplitN(r.UserAgent(), "/", 2)[0]
		if opts.fieldManager == "" {
			opts.fieldManager = "unknown"
		}
	}
	return opts, nil
}

// readBody reads a request body within the size limit.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxRequestBodyBytes
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, apierrors.NewBadRequest("unable to read request body: " + err.Error())
	}
	if int64(len(data)) > limit {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", limit))
	}
	return data, nil
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	mt, err := negotiate(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	kv, err := s.store.Get(ctx, objectKey(res, ns, name))
	if err != nil {
		s.writeError(w, r, storeError(err, res.GroupVersionResource().GroupResource(), name))
		return
	}
	if mt.Type == mediaJSON && mt.As == "" {
		data, err := s.servedJSON(res, kv)
		if err != nil {
			s.writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		writeRaw(w, http.StatusOK, mediaJSON, data)
		return
	}
	obj, err := s.decodeStored(res, kv)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	s.writeResourceObject(w, r, res, http.StatusOK, obj)
}

// writeResourceObject writes one object of res with the negotiated encoding
// and transformation.
func (s *Server) writeResourceObject(w http.ResponseWriter, r *http.Request, res *registry.Resource, code int, obj runtime.Object) {
	mt, err := negotiate(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch mt.As {
	case "Table":
		table, err := s.toTable(r, res, []runtime.Object{obj})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeTransformed(w, mt, code, table)
	case "PartialObjectMetadata":
		s.writeTransformed(w, mt, code, partialObjectMetadata(obj))
	case "":
		obj.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
		s.writeTransformed(w, mt, code, obj)
	default:
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "", "only a single object may be returned for this request", 0, false))
	}
}

// decodeCreate reads the options and the body of a POST into obj, whose
// kind is gvk, and passes on the decoder's warnings; on failure it has
// answered the client and ok is false.
func (s *Server) decodeCreate(w http.ResponseWriter, r *http.Request, subresource string, gvk schema.GroupVersionKind, obj runtime.Object) (opts writeOptions, ok bool) {
	opts, err := s.parseWriteOptions(r, subresource)
	if err != nil {
		s.writeError(w, r, err)
		return opts, false
	}
	body, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return opts, false
	}
	warnings, err := s.codecs.decodeBody(r, body, gvk, obj, opts.validation)
	if err != nil {
		s.writeError(w, r, err)
		return opts, false
	}
	addWarnings(w, warnings)
	return opts, true
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	obj := res.New()
	opts, ok := s.decodeCreate(w, r, "", res.GroupVersionKind(), obj)
	if !ok {
		return
	}
	out, kv, err := s.createObjectStored(ctx, res, ns, obj, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if mt, err := negotiate(r); err == nil && mt.Type == mediaJSON && mt.As == "" && kv != nil && res.Storage == nil {
		// The stored JSON is the object as served: answer with it rather
		// than encoding the object a second time, as a GET would.
		if data, ok := injectResourceVersion(kv.Value, kv.ModRevision); ok {
			writeRaw(w, http.StatusCreated, mediaJSON, data)
			return
		}
	}
	s.writeResourceObject(w, r, res, http.StatusCreated, out)
}

// createObject runs the create path: metadata, defaults, strategy,
// validation, admission hooks, managed fields, store. It is also the path
// in-process callers (bootstrap, controllers) use.
func (s *Server) createObject(ctx context.Context, res *registry.Resource, ns string, obj runtime.Object, opts writeOptions) (runtime.Object, error) {
	out, _, err := s.createObjectStored(ctx, res, ns, obj, opts)
	return out, err
}

// createObjectStored is createObject that also returns what the store
// holds now (nil on a dry run).
func (s *Server) createObjectStored(ctx context.Context, res *registry.Resource, ns string, obj runtime.Object, opts writeOptions) (runtime.Object, *store.KeyValue, error) {
	gr := res.GroupVersionResource().GroupResource()
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(err.Error())
	}
	if res.Namespaced {
		switch {
		case m.GetNamespace() == "":
			m.SetNamespace(ns)
		case ns != "" && m.GetNamespace() != ns:
			return nil, nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		if m.GetNamespace() == "" {
			return nil, nil, apierrors.NewBadRequest("the namespace of the object is required")
		}
	} else {
		m.SetNamespace("")
	}
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(generateName(m.GetGenerateName()))
	}
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.NewTime(time.Now().Truncate(time.Second)))
	m.SetResourceVersion("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	// Generation is the system's: kinds with a spec start it at 1 in their
	// PrepareForCreate; the rest (ConfigMaps, Secrets, ...) carry none.
	m.SetGeneration(0)
	m.SetSelfLink("")

	if res.Default != nil {
		res.Default(obj)
	}
	if res.PrepareForCreate != nil {
		res.PrepareForCreate(obj)
	}
	if err := s.validateCreate(res, obj); err != nil {
		return nil, nil, err
	}
	if res.Namespaced {
		if err := s.checkNamespaceOpen(ctx, m.GetNamespace()); err != nil {
			return nil, nil, err
		}
	}
	finish := func(bool) {}
	if res.BeginCreate != nil && !opts.dryRun {
		f, err := res.BeginCreate(ctx, obj)
		if err != nil {
			return nil, nil, err
		}
		if f != nil {
			finish = func(ok bool) { f(ctx, ok) }
		}
	}
	if s.fields != nil && !opts.applied {
		managed, err := s.fields.Update(res.GroupVersionKind(), nil, obj, opts.fieldManager, opts.subresource)
		if err != nil {
			finish(false)
			return nil, nil, err
		}
		obj = managed
		m, _ = meta.Accessor(obj)
	}
	if opts.dryRun {
		return obj, nil, nil
	}
	data, err := s.encodeStored(res, obj)
	if err != nil {
		finish(false)
		return nil, nil, apierrors.NewInternalError(err)
	}
	wo := store.WriteOptions{Volatile: res.Volatile != nil && res.Volatile(obj, nil)}
	kv, err := s.store.Create(ctx, objectKey(res, m.GetNamespace(), m.GetName()), data, wo)
	if err != nil {
		finish(false)
		return nil, nil, storeError(err, gr, m.GetName())
	}
	finish(true)
	m.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
	return obj, kv, nil
}

// generateName appends 5 random characters, as Kubernetes' SimpleNameGenerator.
func generateName(base string) string {
	const maxNameLength, randomLength = 63, 5
	if len(base) > maxNameLength-randomLength {
		base = base[:maxNameLength-randomLength]
	}
	return base + utilrand.String(randomLength)
}

// checkNamespaceOpen refuses creates in a missing or terminating namespace,
// as the NamespaceLifecycle admission plugin does.
func (s *Server) checkNamespaceOpen(ctx context.Context, ns string) error {
	nsRes := s.table.Lookup(schema.GroupVersion{Version: "v1"}, "namespaces")
	if nsRes == nil {
		return nil
	}
	kv, err := s.store.Get(ctx, objectKey(nsRes, "", ns))
	if errors.Is(err, store.ErrNotFound) {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, ns)
	}
	if err != nil {
		return storeError(err, schema.GroupResource{Resource: "namespaces"}, ns)
	}
	terminating, err := s.namespaceTerminating(nsRes, kv)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if terminating {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, ns,
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	}
	return nil
}

// namespaceState is the part of a stored Namespace that tells whether it
// is terminating; every create in a namespace reads it, and decoding only
// it skips the managed fields and the rest of the object.
type namespaceState struct {
	Metadata struct {
		DeletionTimestamp *metav1.Time `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		Phase corev1.NamespacePhase `json:"phase"`
	} `json:"status"`
}

func (s *Server) namespaceTerminating(nsRes *registry.Resource, kv *store.KeyValue) (bool, error) {
	if nsRes.Storage == nil {
		var st namespaceState
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return false, fmt.Errorf("decode stored object %s: %w", kv.Key, err)
		}
		return st.Metadata.DeletionTimestamp != nil || st.Status.Phase == corev1.NamespaceTerminating, nil
	}
	obj, err := s.decodeStored(nsRes, kv)
	if err != nil {
		return false, err
	}
	nsObj, ok := obj.(*corev1.Namespace)
	return ok && (nsObj.DeletionTimestamp != nil || nsObj.Status.Phase == corev1.NamespaceTerminating), nil
}

func (s *Server) validateCreate(res *registry.Resource, obj runtime.Object) error {
	m, _ := meta.Accessor(obj)
	nameFn := res.NameValidation
	if nameFn == nil {
		nameFn = apivalidation.NameIsDNSSubdomain
	}
	errs := apivalidation.ValidateObjectMetaAccessor(m, res.Namespaced, apivalidation.ValidateNameFunc(nameFn), field.NewPath("metadata"))
	switch {
	case res.ValidateCreate != nil:
		errs = append(errs, res.ValidateCreate(obj)...)
	case res.Validate != nil:
		errs = append(errs, res.Validate(obj)...)
	}
	return invalid(res, m.GetName(), errs)
}

// validateUpdate validates an update. A binding changes spec.nodeName,
// which no other update may, so it skips the kind's update rules.
func (s *Server) validateUpdate(res *registry.Resource, obj, old runtime.Object, subresource string) error {
	m, _ := meta.Accessor(obj)
	om, _ := meta.Accessor(old)
	errs := apivalidation.ValidateObjectMetaAccessorUpdate(m, om, field.NewPath("metadata"))
	nameFn := res.NameValidation
	if nameFn == nil {
		nameFn = apivalidation.NameIsDNSSubdomain
	}
	errs = append(errs, apivalidation.ValidateObjectMetaAccessor(m, res.Namespaced, apivalidation.ValidateNameFunc(nameFn), field.NewPath("metadata"))...)
	if res.Validate != nil {
		errs = append(errs, res.Validate(obj)...)
	}
	if res.ValidateUpdate != nil && subresource != "binding" {
		errs = append(errs, res.ValidateUpdate(obj, old)...)
	}
	return invalid(res, m.GetName(), errs)
}

func invalid(res *registry.Resource, name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(res.GroupVersionKind().GroupKind(), name, errs)
}

func addWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", `299 - "`+strings.ReplaceAll(msg, `"`, `\"`)+`"`)
	}
}

// updateFunc computes the desired object from the current one (nil when
// the object does not exist). It must not modify current.
type updateFunc func(current runtime.Object) (runtime.Object, error)

// updateResult is what an update did.
type updateResult struct {
	obj     runtime.Object
	created bool
	deleted bool
}

// guaranteedUpdate reads the object, computes the new one with tryUpdate and
// writes it with compare-and-swap, retrying on conflicts unless the new
// object carries a resourceVersion precondition (then it is a 409).
func (s *Server) guaranteedUpdate(ctx context.Context, res *registry.Resource, ns, name string, allowCreate bool, opts writeOptions, tryUpdate updateFunc) (*updateResult, error) {
	gr := res.GroupVersionResource().GroupResource()
	key := objectKey(res, ns, name)
	for attempt := 0; ; attempt++ {
		kv, err := s.store.Get(ctx, key)
		var current runtime.Object
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, storeError(err, gr, name)
		default:
			if current, err = s.decodeStored(res, kv); err != nil {
				return nil, apierrors.NewInternalError(err)
			}
		}
		obj, err := tryUpdate(current)
		if err != nil {
			return nil, err
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		if m.GetName() != name {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name))
		}
		if res.Namespaced {
			if m.GetNamespace() == "" {
				m.SetNamespace(ns)
			} else if m.GetNamespace() != ns {
				return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
			}
		}
		if current == nil {
			if !allowCreate {
				return nil, apierrors.NewNotFound(gr, name)
			}
			out, err := s.createObject(ctx, res, ns, obj, opts)
			if err != nil {
				return nil, err
			}
			return &updateResult{obj: out, created: true}, nil
		}

		precondition := m.GetResourceVersion()
		if precondition != "" && precondition != strconv.FormatInt(kv.ModRevision, 10) {
			return nil, apierrors.NewConflict(gr, name, errors.New(objectModifiedMsg))
		}
		if precondition == "" {
			// An unconditional update (every kind allows one, as Kubernetes'
			// AllowUnconditionalUpdate does) takes the stored revision.
			m.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
		}
		if err := s.prepareUpdate(res, obj, current, opts); err != nil {
			return nil, err
		}
		finish := func(bool) {}
		if res.BeginUpdate != nil && !opts.dryRun {
			f, err := res.BeginUpdate(ctx, obj, current)
			if err != nil {
				return nil, err
			}
			if f != nil {
				finish = func(ok bool) { f(ctx, ok) }
			}
		}
		if s.fields != nil && !opts.applied && !opts.unmanaged {
			managed, err := s.fields.Update(res.GroupVersionKind(), current, obj, opts.fieldManager, opts.subresource)
			if err != nil {
				finish(false)
				return nil, err
			}
			obj = managed
			m, _ = meta.Accessor(obj)
		}
		if opts.dryRun {
			m.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
			return &updateResult{obj: obj}, nil
		}
		// An object whose deletion waits only for finalizers goes away when
		// the last one is removed.
		if s.deletionComplete(res, obj, current) {
			dkv, err := s.store.Delete(ctx, key, kv.ModRevision)
			finish(false) // the new state was never stored
			if errors.Is(err, store.ErrConflict) && precondition == "" && attempt < maxUpdateRetries {
				continue
			}
			if err != nil {
				return nil, storeError(err, gr, name)
			}
			s.afterDelete(ctx, res, current)
			m.SetResourceVersion(strconv.FormatInt(dkv.ModRevision, 10))
			return &updateResult{obj: obj, deleted: true}, nil
		}
		if apiequality.Semantic.DeepEqual(stripRV(obj), stripRV(current)) {
			// No-op updates do not write (and keep the resourceVersion).
			finish(true)
			m.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
			return &updateResult{obj: obj}, nil
		}
		data, err := s.encodeStored(res, obj)
		if err != nil {
			finish(false)
			return nil, apierrors.NewInternalError(err)
		}
		wo := store.WriteOptions{Volatile: res.Volatile != nil && res.Volatile(obj, current)}
		nkv, err := s.store.Update(ctx, key, data, kv.ModRevision, wo)
		finish(err == nil)
		if errors.Is(err, store.ErrConflict) && precondition == "" && attempt < maxUpdateRetries {
			continue
		}
		if err != nil {
			return nil, storeError(err, gr, name)
		}
		m.SetResourceVersion(strconv.FormatInt(nkv.ModRevision, 10))
		return &updateResult{obj: obj}, nil
	}
}

const maxUpdateRetries = 16

// checkUIDPrecondition refuses a replacement (PUT) whose metadata.uid names
// another object than the stored one: the object was deleted and created
// again since the client read it. Upstream takes a PUT's uid as a storage
// precondition (rest.defaultUpdatedObjectInfo.Preconditions) and answers
// 409 Conflict with the storage layer's message, which this repeats.
func checkUIDPrecondition(res *registry.Resource, ns, name string, obj, current runtime.Object) error {
	m, err := meta.Accessor(obj)
	if err != nil || current == nil || m.GetUID() == "" {
		return nil
	}
	cm, err := meta.Accessor(current)
	if err != nil || cm.GetUID() == m.GetUID() {
		return nil
	}
	return apierrors.NewConflict(res.GroupVersionResource().GroupResource(), name, fmt.Errorf(
		"StorageError: invalid object, Code: 4, Key: %s, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: %s, UID in object meta: %s",
		objectKey(res, ns, name), m.GetUID(), cm.GetUID()))
}

func stripRV(obj runtime.Object) runtime.Object {
	c := obj.DeepCopyObject()
	if m, err := meta.Accessor(c); err == nil {
		m.SetResourceVersion("")
		m.SetManagedFields(nil)
	}
	return c
}

// prepareUpdate keeps the system-owned metadata of current in obj, applies
// the update strategy and defaults, and validates.
func (s *Server) prepareUpdate(res *registry.Resource, obj, current runtime.Object, opts writeOptions) error {
	m, _ := meta.Accessor(obj)
	om, _ := meta.Accessor(current)
	// An object naming no UID takes the stored one; one naming another is
	// refused (metadata.uid is immutable), as upstream's rest.BeforeUpdate
	// does: a patch setting a stale uid is a 422. Checked before the
	// strategies run, since a status strategy copies the stored metadata.
	if uid := m.GetUID(); uid != "" && uid != om.GetUID() {
		return invalid(res, m.GetName(), apivalidation.ValidateImmutableField(uid, om.GetUID(), field.NewPath("metadata", "uid")))
	}
	m.SetUID(om.GetUID())
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	m.SetGeneration(om.GetGeneration())
	m.SetSelfLink("")
	if m.GetGenerateName() == "" {
		m.SetGenerateName(om.GetGenerateName())
	}
	if res.Default != nil {
		res.Default(obj)
	}
	switch opts.subresource {
	case "status":
		res.PrepareForStatusUpdate(obj, current)
	case "":
		if res.PrepareForUpdate != nil {
			res.PrepareForUpdate(obj, current)
		}
	default:
		if prepare := res.PrepareForSubresource[opts.subresource]; prepare != nil {
			prepare(obj, current)
		}
	}
	return s.validateUpdate(res, obj, current, opts.subresource)
}

func (s *Server) afterDelete(ctx context.Context, res *registry.Resource, obj runtime.Object) {
	if res.AfterDelete != nil {
		res.AfterDelete(ctx, obj)
	}
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name, subresource string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	opts, err := s.parseWriteOptions(r, subresource)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj := res.New()
	warnings, err := s.codecs.decodeBody(r, body, res.GroupVersionKind(), obj, opts.validation)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	addWarnings(w, warnings)
	result, err := s.guaranteedUpdate(ctx, res, ns, name, false, opts, func(current runtime.Object) (runtime.Object, error) {
		if err := checkUIDPrecondition(res, ns, name, obj, current); err != nil {
			return nil, err
		}
		return obj.DeepCopyObject(), nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if result.created {
		code = http.StatusCreated
	}
	s.writeResourceObject(w, r, res, code, result.obj)
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name, subresource string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	opts, err := s.parseWriteOptions(r, subresource)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	pt := types.PatchType(strings.TrimSpace(ct))
	force := isTrue(r.URL.Query().Get("force"))
	switch pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
		if force {
			s.writeError(w, r, apierrors.NewBadRequest("force is only valid for apply patches"))
			return
		}
	case types.ApplyYAMLPatchType:
		opts.applied = true
		if r.URL.Query().Get("fieldManager") == "" {
			s.writeError(w, r, apierrors.NewBadRequest("PATCH, application/apply-patch+yaml requests require fieldManager to be set"))
			return
		}
	default:
		s.writeError(w, r, unsupportedMediaType(ct))
		return
	}
	if s.fields == nil {
		s.writeError(w, r, apierrors.NewInternalError(errors.New("patching is not available")))
		return
	}
	var warnings []string
	result, err := s.guaranteedUpdate(ctx, res, ns, name, pt == types.ApplyYAMLPatchType, opts, func(current runtime.Object) (runtime.Object, error) {
		if pt == types.ApplyYAMLPatchType {
			var live runtime.Object
			if current != nil {
				live = current.DeepCopyObject()
			}
			obj, err := s.fields.Apply(res.GroupVersionKind(), live, body, opts.fieldManager, force, subresource)
			if err != nil {
				return nil, err
			}
			return obj, nil
		}
		if current == nil {
			return nil, apierrors.NewNotFound(res.GroupVersionResource().GroupResource(), name)
		}
		obj, warns, err := s.fields.Patch(current.DeepCopyObject(), pt, body, opts.validation)
		warnings = warns
		return obj, err
	})
	addWarnings(w, warnings)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if result.created {
		code = http.StatusCreated
	}
	s.writeResourceObject(w, r, res, code, result.obj)
}

// deletionComplete reports whether an update removed the last thing an
// object being deleted waited for: its deletion grace period is over and
// no finalizer (nor the kind's own strategy, e.g. a namespace's spec
// finalizers) holds it.
func (s *Server) deletionComplete(res *registry.Resource, obj, current runtime.Object) bool {
	m, _ := meta.Accessor(obj)
	om, _ := meta.Accessor(current)
	if len(m.GetFinalizers()) > 0 || om.GetDeletionTimestamp() == nil ||
		om.GetDeletionGracePeriodSeconds() == nil || *om.GetDeletionGracePeriodSeconds() != 0 {
		return false
	}
	if res.GracefulDelete != nil {
		zero := int64(0)
		return !res.GracefulDelete(obj.DeepCopyObject(), &zero, time.Now())
	}
	return true
}
