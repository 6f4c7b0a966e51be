package patch

import (
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/yaml"
)

// Options configure a Manager.
type Options struct {
	// Scheme knows every served kind (creates, converts and defaults them).
	Scheme *runtime.Scheme
	// Models returns the OpenAPI definitions of the served kinds, with
	// x-kubernetes-group-version-kind on each (server/openapi's
	// Builder.Definitions). It is called once, when managed fields are
	// first needed, and the result is not kept.
	Models func() map[string]*spec.Schema
	// HasStatus reports whether a kind is served with a status
	// subresource: then its main resource does not take ownership of
	// status, nor its status subresource of spec. May be nil.
	HasStatus func(schema.GroupVersionKind) bool
}

// Manager applies patches and records managed fields. It is safe for
// concurrent use.
type Manager struct {
	scheme    *runtime.Scheme
	models    func() map[string]*spec.Schema
	hasStatus func(schema.GroupVersionKind) bool

	convOnce  sync.Once
	converter managedfields.TypeConverter
	convErr   error

	mu       sync.Mutex
	managers map[managerKey]*managedfields.FieldManager
}

type managerKey struct {
	gvk         schema.GroupVersionKind
	subresource string
}

// NewManager returns a Manager; it builds nothing until first used.
func NewManager(opts Options) *Manager {
	return &Manager{
		scheme:    opts.Scheme,
		models:    opts.Models,
		hasStatus: opts.HasStatus,
		managers:  map[managerKey]*managedfields.FieldManager{},
	}
}

// typeConverter builds the structured-merge-diff schema of all served
// kinds once.
func (m *Manager) typeConverter() (managedfields.TypeConverter, error) {
	m.convOnce.Do(func() {
		if m.models == nil {
			m.convErr = errors.New("no OpenAPI models for server-side apply")
			return
		}
		m.converter, m.convErr = managedfields.NewTypeConverter(m.models(), false)
		if m.convErr != nil {
			m.convErr = fmt.Errorf("build server-side apply type converter: %w", m.convErr)
		}
	})
	return m.converter, m.convErr
}

// fieldManager returns the field manager of a kind as written through
// subresource ("" for the main resource).
func (m *Manager) fieldManager(gvk schema.GroupVersionKind, subresource string) (*managedfields.FieldManager, error) {
	key := managerKey{gvk, subresource}
	m.mu.Lock()
	defer m.mu.Unlock()
	if fm := m.managers[key]; fm != nil {
		return fm, nil
	}
	tc, err := m.typeConverter()
	if err != nil {
		return nil, err
	}
	var reset map[fieldpath.APIVersion]fieldpath.Filter
	if m.hasStatus != nil && m.hasStatus(gvk) {
		var exclude *fieldpath.Set
		switch subresource {
		case "":
			exclude = fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
		case "status":
			exclude = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"))
		}
		if exclude != nil {
			reset = map[fieldpath.APIVersion]fieldpath.Filter{
				fieldpath.APIVersion(gvk.GroupVersion().String()): fieldpath.NewExcludeSetFilter(exclude),
			}
		}
	}
	fm, err := managedfields.NewDefaultFieldManager(tc, m.scheme, m.scheme, m.scheme, gvk, gvk.GroupVersion(), subresource, reset)
	if err != nil {
		return nil, fmt.Errorf("field manager for %s: %w", gvk, err)
	}
	m.managers[key] = fm
	return fm, nil
}

// newObject returns an empty object of kind gvk with its type meta set.
func (m *Manager) newObject(gvk schema.GroupVersionKind) (runtime.Object, error) {
	obj, err := m.scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, nil
}

// Update records in obj's managed fields what manager changed from live
// (nil on create) with operation Update. Like Kubernetes, a failure to
// compute them never fails the write: the managed fields are then reset.
func (m *Manager) Update(gvk schema.GroupVersionKind, live, obj runtime.Object, manager, subresource string) (runtime.Object, error) {
	fm, err := m.fieldManager(gvk, subresource)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if live == nil {
		if live, err = m.newObject(gvk); err != nil {
			return nil, apierrors.NewInternalError(err)
		}
	}
	out, err := fm.Update(live, obj, manager)
	if err != nil {
		if a, aerr := meta.Accessor(obj); aerr == nil {
			a.SetManagedFields(nil)
		}
		return obj, nil
	}
	return m.typed(gvk, out)
}

// Apply merges a server-side apply patch (YAML or JSON) into live (nil
// when the object does not exist yet) for manager. Fields another manager
// owns with a different value are conflicts (409) unless force is set,
// which takes them over.
func (m *Manager) Apply(gvk schema.GroupVersionKind, live runtime.Object, patch []byte, manager string, force bool, subresource string) (runtime.Object, error) {
	applied := map[string]interface{}{}
	if err := yaml.Unmarshal(patch, &applied); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err))
	}
	if len(applied) == 0 {
		return nil, apierrors.NewBadRequest("error decoding YAML: the apply patch is empty")
	}
	patchObj := &unstructured.Unstructured{Object: applied}
	fm, err := m.fieldManager(gvk, subresource)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if live == nil {
		if live, err = m.newObject(gvk); err != nil {
			return nil, apierrors.NewInternalError(err)
		}
	} else if live.GetObjectKind().GroupVersionKind().Empty() {
		live.GetObjectKind().SetGroupVersionKind(gvk)
	}
	out, err := fm.Apply(live, patchObj, manager, force)
	if err != nil {
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			return nil, err
		}
		// The applied configuration does not fit the kind's schema.
		return nil, apierrors.NewBadRequest(err.Error())
	}
	return m.typed(gvk, out)
}

// typed makes sure obj is the typed Go object of gvk (the field manager
// may hand back unstructured content).
func (m *Manager) typed(gvk schema.GroupVersionKind, obj runtime.Object) (runtime.Object, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out, err := m.newObject(gvk)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	out.GetObjectKind().SetGroupVersionKind(gvk)
	return out, nil
}
