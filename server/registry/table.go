package registry

import (
	"fmt"
	authorizationv1 "k8s.io/api/authorization/v1"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Table is the set of served resources and the scheme that knows their types.
type Table struct {
	Scheme    *runtime.Scheme
	resources []*Resource
	byGVR     map[schema.GroupVersionResource]*Resource
}

// NewTable builds the scheme and the resource table. It has no side effects.
func NewTable() (*Table, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		autoscalingv1.AddToScheme, autoscalingv2.AddToScheme,
		networkingv1.AddToScheme, discoveryv1.AddToScheme,
		coordinationv1.AddToScheme, eventsv1.AddToScheme, rbacv1.AddToScheme,
		storagev1.AddToScheme, policyv1.AddToScheme, authorizationv1.AddToScheme, authenticationv1.AddToScheme, addConversions,
	} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	metav1.AddMetaToScheme(scheme)

	t := &Table{Scheme: scheme, byGVR: map[schema.GroupVersionResource]*Resource{}}
	for _, group := range [][]*Resource{
		coreResources(), appsResources(), batchResources(),
		autoscalingResources(), networkingResources(), discoveryResources(),
		coordinationResources(), eventsResources(), rbacResources(),
		storageResources(), policyResources(), authorizationResources(), authenticationResources(),
	} {
		for _, r := range group {
			if err := t.add(r); err != nil {
				return nil, err
			}
		}
	}
	// An entry may name its storage by a placeholder carrying only the
	// group/version and resource name (events.k8s.io/v1 events are stored
	// as core/v1 events); point it at the registered entry.
	for _, r := range t.resources {
		if r.Storage == nil {
			continue
		}
		stored := t.byGVR[r.Storage.GroupVersionResource()]
		if stored == nil || stored.Storage != nil {
			return nil, fmt.Errorf("resource %s is stored as %s, which is not a served storage resource", r.GroupVersionResource(), r.Storage.GroupVersionResource())
		}
		r.Storage = stored
	}
	return t, nil
}

func (t *Table) add(r *Resource) error {
	gvr := r.GroupVersionResource()
	if _, dup := t.byGVR[gvr]; dup {
		return fmt.Errorf("resource %s registered twice", gvr)
	}
	if r.New == nil || r.NewList == nil {
		return fmt.Errorf("resource %s has no New/NewList", gvr)
	}
	if r.HasSubresource("status") && r.PrepareForStatusUpdate == nil {
		return fmt.Errorf("resource %s has a status subresource but no PrepareForStatusUpdate", gvr)
	}
	t.resources = append(t.resources, r)
	t.byGVR[gvr] = r
	return nil
}

// Resources lists every served resource in registration order.
func (t *Table) Resources() []*Resource { return t.resources }

// Lookup finds a resource by group/version and plural name; nil if unknown.
func (t *Table) Lookup(gv schema.GroupVersion, name string) *Resource {
	return t.byGVR[gv.WithResource(name)]
}
