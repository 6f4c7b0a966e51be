// Package registry is the table of Kubernetes resources orch serves. Each
// kind is one Resource entry: its names and scope, how to make an empty
// object, and the kind-specific pieces (defaults, create/update strategy,
// validation, table columns, field selectors). The generic REST handler in
// server/apiserver does everything else the same way for all kinds.
//
// The package holds no state and does no I/O: hooks that need server state
// (IP allocators, quota) are attached by the server when it builds the table.
package registry

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resource describes one served resource at one group/version.
type Resource struct {
	// GroupVersion and Resource name (plural, lower case) as served.
	GroupVersion schema.GroupVersion
	Name         string
	// Kind of the objects, e.g. "Deployment"; the list kind is Kind+"List".
	Kind         string
	SingularName string
	Namespaced   bool
	ShortNames   []string
	Categories   []string

	// Storage is where objects live when the same objects are served at
	// several versions or groups (HPA autoscaling/v1 and v2, core/v1 and
	// events.k8s.io/v1 events). Nil means "stored as served". Objects are
	// converted through the scheme between the served and stored kinds.
	// It may be a placeholder with only GroupVersion and Name set: NewTable
	// replaces it with the registered entry.
	Storage *Resource

	// Subresources this resource has ("status", "scale", "binding",
	// "eviction", ...). The generic handler implements them.
	Subresources []string

	// New returns an empty typed object, e.g. &corev1.Pod{}; NewList its list.
	New     func() runtime.Object
	NewList func() runtime.Object

	// Default fills in defaults exactly as the Kubernetes API server does
	// (protocol TCP, imagePullPolicy, restartPolicy, ...). It runs on create,
	// update and patch results, before validation. May be nil.
	Default func(obj runtime.Object)

	// PrepareForCreate resets what a client may not set on create (usually
	// status) and sets generation. May be nil (generic behaviour: generation 1).
	PrepareForCreate func(obj runtime.Object)
	// PrepareForUpdate keeps what a main-resource update may not change
	// (usually status) and bumps metadata.generation when the spec changed.
	// May be nil.
	PrepareForUpdate func(obj, old runtime.Object)
	// PrepareForStatusUpdate keeps everything but the status from old.
	// Required when Subresources contains "status".
	PrepareForStatusUpdate func(obj, old runtime.Object)

	// NameValidation checks metadata.name (see
	// k8s.io/apimachinery/pkg/api/validation: NameIsDNSSubdomain,
	// NameIsDNSLabel, NameIsDNS1035Label, path segment names). Nil means
	// NameIsDNSSubdomain, the rule of most kinds.
	NameValidation func(name string, prefix bool) []string

	// PrepareForSubresource keeps, for an update through a subresource other
	// than status (e.g. namespaces/finalize), what that subresource may not
	// change. Keyed by subresource name.
	PrepareForSubresource map[string]func(obj, old runtime.Object)

	// Validate checks a new object; ValidateUpdate checks an update
	// (immutable fields). Object metadata (name, namespace, labels,
	// annotations) is validated by the generic handler. May be nil.
	Validate       func(obj runtime.Object) field.ErrorList
	ValidateUpdate func(obj, old runtime.Object) field.ErrorList
	// ValidateCreate, when set, replaces Validate on create: for kinds whose
	// new objects are held to stricter rules than updates (events.k8s.io).
	ValidateCreate func(obj runtime.Object) field.ErrorList

	// Columns and Row give `kubectl get` its table, matching Kubernetes'
	// printers: the first column is Name; priority-1 columns are `-o wide`.
	// Row returns one cell per column. Nil means Name and Age only.
	Columns []metav1.TableColumnDefinition
	Row     func(obj runtime.Object) []interface{}

	// Fields returns the selectable fields beyond metadata.name and
	// metadata.namespace (which the generic handler adds), e.g.
	// spec.nodeName and status.phase for pods. May be nil.
	Fields func(obj runtime.Object) fields.Set

	// Ephemeral, when set, makes the resource create-only and never stored
	// (access reviews, token reviews): a create decodes the object, runs
	// Default and Validate, and answers 201 with what Ephemeral returns.
	// Every other verb is 405. Attached by the server, which knows how to
	// answer (the authorizer, the authenticator).
	Ephemeral func(ctx context.Context, obj runtime.Object) (runtime.Object, error)

	// Volatile reports whether a write may be kept in memory only (see
	// store.WriteOptions.Volatile): node leases, node heartbeats. old is nil
	// on create. May be nil (never volatile).
	Volatile func(obj, old runtime.Object) bool

	// GracefulDelete decides whether a delete must wait: pods wait for their
	// grace period (the node's agent deletes them finally), namespaces for
	// the namespace controller to empty them. It marks obj (deletionTimestamp,
	// deletionGracePeriodSeconds, status) and returns true when the object
	// must be kept. requested is DeleteOptions.gracePeriodSeconds. Nil means
	// objects are deleted at once unless finalizers hold them.
	GracefulDelete func(obj runtime.Object, requested *int64, now time.Time) (pending bool)

	// Hooks that need server state (IP and port allocators), attached by
	// the server. BeginCreate and BeginUpdate run after validation, before
	// the store write; the FinishFunc they return (may be nil) is called
	// exactly once with the outcome of that write, so a hook can commit or
	// roll back what it reserved (a conflict retry reports false, then
	// begins again). Errors are returned to the client as they are when
	// they are API status errors (k8s.io/apimachinery/pkg/api/errors),
	// else as 500. AfterDelete runs once an object is gone from the store.
	BeginCreate func(ctx context.Context, obj runtime.Object) (FinishFunc, error)
	BeginUpdate func(ctx context.Context, obj, old runtime.Object) (FinishFunc, error)
	AfterDelete func(ctx context.Context, obj runtime.Object)

	// Actions are create-only subresources answered by a server hook
	// instead of the store, keyed by subresource name (serviceaccounts/token).
	// Attached by the server; the name must be in Subresources too.
	Actions map[string]Action
}

// Action is a create-only subresource (see Resource.Actions): a POST's body
// is decoded into New(), of kind GroupVersionKind, and Create's result is
// the answer (201).
type Action struct {
	GroupVersionKind schema.GroupVersionKind
	New              func() runtime.Object
	Create           func(ctx context.Context, namespace, name string, obj runtime.Object) (runtime.Object, error)
}

// FinishFunc ends a BeginCreate or BeginUpdate: success reports whether the
// store write happened.
type FinishFunc = func(ctx context.Context, success bool)

// GroupVersionKind of the served objects.
func (r *Resource) GroupVersionKind() schema.GroupVersionKind {
	return r.GroupVersion.WithKind(r.Kind)
}

// GroupVersionResource as served.
func (r *Resource) GroupVersionResource() schema.GroupVersionResource {
	return r.GroupVersion.WithResource(r.Name)
}

// StorageResource is the entry whose storage this one uses.
func (r *Resource) StorageResource() *Resource {
	if r.Storage != nil {
		return r.Storage
	}
	return r
}

// HasSubresource reports whether name is one of r's subresources.
func (r *Resource) HasSubresource(name string) bool {
	for _, s := range r.Subresources {
		if s == name {
			return true
		}
	}
	return false
}
