// Package history keeps the ControllerRevision history the DaemonSet and
// StatefulSet controllers share, as Kubernetes' pkg/controller/history
// does: a revision snapshots a workload's pod template as a strategic merge
// patch ({"spec":{"template":{...,"$patch":"replace"}}}, the form `kubectl
// rollout undo` sends back), is named <owner>-<hash>, carries a revision
// number, and is owned by its workload through a controller reference.
//
// It also holds the controller-reference bookkeeping (adopting orphans
// that match a selector, releasing owned objects that no longer do) both
// controllers apply to their pods and revisions.
//
// The package writes only through the API it is given.
package history

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/orch-dev/orch/server/controllers/informer"
)

// HashLabel is the label holding the hash of a revision's data.
const HashLabel = "controller.kubernetes.io/hash"

// maxPrefixLen keeps <prefix>-<hash> within a DNS subdomain (253 bytes).
const maxPrefixLen = 223

// GVR is the ControllerRevision resource.
var GVR = appsv1.SchemeGroupVersion.WithResource("controllerrevisions")

// API is the part of orch's in-process API (apiserver.Local) history uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

// Hash is the hash of revision data and a collision count: FNV-32a of the
// data, then of the decimal count, encoded with rand.SafeEncodeString so
// that it never spells words (Kubernetes' scheme).
func Hash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		h.Write([]byte(strconv.FormatInt(int64(*collisionCount), 10)))
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// Name is the name of the revision of owner prefix with hash.
func Name(prefix, hash string) string {
	if len(prefix) > maxPrefixLen {
		prefix = prefix[:maxPrefixLen]
	}
	return prefix + "-" + hash
}

// TemplatePatch is the data of a revision of template: a strategic merge
// patch replacing spec.template, exactly what Kubernetes stores and what
// `kubectl rollout undo` applies to the workload.
func TemplatePatch(template *corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(template)
	if err != nil {
		return nil, fmt.Errorf("encode pod template: %w", err)
	}
	var tmpl map[string]any
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		return nil, fmt.Errorf("decode pod template: %w", err)
	}
	tmpl["$patch"] = "replace"
	// Maps encode with sorted keys: equal templates give equal bytes.
	return json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
}

// TemplateOf decodes the pod template a revision holds.
func TemplateOf(rev *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	var data struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &data); err != nil {
		return nil, fmt.Errorf("decode controller revision %s: %w", rev.Name, err)
	}
	return &data.Spec.Template, nil
}

// New returns the revision number revision of parent (of parentKind)
// holding data, labelled like the template plus HashLabel, named with the
// hash of data and collisionCount. It is not created.
func New(parent metav1.Object, parentKind schema.GroupVersionKind, templateLabels map[string]string, data []byte, revision int64, collisionCount *int32) *appsv1.ControllerRevision {
	hash := Hash(data, collisionCount)
	lbls := make(map[string]string, len(templateLabels)+1)
	for k, v := range templateLabels {
		lbls[k] = v
	}
	lbls[HashLabel] = hash
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            Name(parent.GetName(), hash),
			Namespace:       parent.GetNamespace(),
			Labels:          lbls,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(parent, parentKind)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}
}

// Equal reports whether a and b hold the same data (both nil counts).
func Equal(a, b *appsv1.ControllerRevision) bool {
	if a == nil || b == nil {
		return a == b
	}
	// Hashes include the collision count: differing hashes do not prove
	// differing data, so only the bytes decide.
	return bytes.Equal(a.Data.Raw, b.Data.Raw)
}

// FindEqual returns the revisions holding needle's data, in their order.
func FindEqual(revisions []*appsv1.ControllerRevision, needle *appsv1.ControllerRevision) []*appsv1.ControllerRevision {
	var eq []*appsv1.ControllerRevision
	for _, r := range revisions {
		if Equal(r, needle) {
			eq = append(eq, r)
		}
	}
	return eq
}

// Sort orders revisions by revision number, then creation time, then name.
func Sort(revisions []*appsv1.ControllerRevision) {
	slices.SortStableFunc(revisions, func(a, b *appsv1.ControllerRevision) int {
		switch {
		case a.Revision != b.Revision:
			return cmpInt64(a.Revision, b.Revision)
		case !a.CreationTimestamp.Equal(&b.CreationTimestamp):
			if a.CreationTimestamp.Before(&b.CreationTimestamp) {
				return -1
			}
			return 1
		}
		return bytes.Compare([]byte(a.Name), []byte(b.Name))
	})
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Next is the number the next revision gets: one more than the highest.
func Next(revisions []*appsv1.ControllerRevision) int64 {
	var highest int64
	for _, r := range revisions {
		highest = max(highest, r.Revision)
	}
	return highest + 1
}

// History reads revisions from an informer's cache and writes them through
// the API.
type History struct {
	api          API
	revisions    informer.Lister[*appsv1.ControllerRevision]
	fieldManager string
	hashLabels   []string
}

// NewHistory returns a History over the controllerrevisions informer inf.
// Besides HashLabel, the labels in hashLabels of the revisions it creates
// are set to their hash (DaemonSets label theirs controller-revision-hash).
func NewHistory(api API, inf *informer.Informer, fieldManager string, hashLabels ...string) *History {
	return &History{
		api:          api,
		revisions:    informer.NewLister[*appsv1.ControllerRevision](inf),
		fieldManager: fieldManager,
		hashLabels:   append([]string{HashLabel}, hashLabels...),
	}
}

// Claim returns the revisions parent controls, adopting the orphans that
// match selector and releasing owned ones that no longer do.
func (h *History) Claim(ctx context.Context, parent metav1.Object, parentKind schema.GroupVersionKind, selector labels.Selector) ([]*appsv1.ControllerRevision, error) {
	candidates := h.revisions.List(parent.GetNamespace(), nil)
	return Claim(ctx, candidates, parent, parentKind, selector, nil, func(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
		return h.update(ctx, rev)
	})
}

// Create creates rev for parent. On a name collision with different data
// it bumps *collisionCount and tries the next name, as Kubernetes does; a
// revision with the same name and data is returned as is.
func (h *History) Create(ctx context.Context, parent metav1.Object, rev *appsv1.ControllerRevision, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	if collisionCount == nil {
		return nil, fmt.Errorf("create controller revision of %s: nil collision count", parent.GetName())
	}
	clone := rev.DeepCopy()
	clone.Namespace = parent.GetNamespace()
	// Bounded: a new hash per attempt makes further collisions improbable.
	for range 64 {
		hash := Hash(rev.Data.Raw, collisionCount)
		clone.Name = Name(parent.GetName(), hash)
		if clone.Labels == nil {
			clone.Labels = map[string]string{}
		}
		for _, l := range h.hashLabels {
			clone.Labels[l] = hash
		}
		obj, err := h.api.Create(ctx, GVR, clone, h.fieldManager)
		if err == nil {
			return asRevision(obj)
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create controller revision %s/%s: %w", clone.Namespace, clone.Name, err)
		}
		obj, err = h.api.Get(ctx, GVR, clone.Namespace, clone.Name)
		if err != nil {
			return nil, fmt.Errorf("get controller revision %s/%s: %w", clone.Namespace, clone.Name, err)
		}
		existing, err := asRevision(obj)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(existing.Data.Raw, clone.Data.Raw) {
			return existing, nil
		}
		*collisionCount++
	}
	return nil, fmt.Errorf("create controller revision of %s/%s: too many hash collisions", parent.GetNamespace(), parent.GetName())
}

// UpdateRevision renumbers rev to revision (a rollback to an old template
// makes its revision the newest).
func (h *History) UpdateRevision(ctx context.Context, rev *appsv1.ControllerRevision, revision int64) (*appsv1.ControllerRevision, error) {
	if rev.Revision == revision {
		return rev, nil
	}
	clone := rev.DeepCopy()
	clone.Revision = revision
	return h.update(ctx, clone)
}

func (h *History) update(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	obj, err := h.api.Update(ctx, GVR, rev, "", h.fieldManager)
	if err != nil {
		return nil, fmt.Errorf("update controller revision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return asRevision(obj)
}

// Delete deletes rev; a revision already gone is not an error.
func (h *History) Delete(ctx context.Context, rev *appsv1.ControllerRevision) error {
	_, err := h.api.Delete(ctx, GVR, rev.Namespace, rev.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rev.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete controller revision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return nil
}

// Truncate deletes the oldest revisions that are not live (live reports
// those still used by pods or as current/update revision) until at most
// limit non-live ones remain.
func (h *History) Truncate(ctx context.Context, revisions []*appsv1.ControllerRevision, live func(*appsv1.ControllerRevision) bool, limit int32) error {
	var old []*appsv1.ControllerRevision
	for _, r := range revisions {
		if !live(r) {
			old = append(old, r)
		}
	}
	excess := len(old) - int(max(limit, 0))
	if excess <= 0 {
		return nil
	}
	Sort(old)
	for _, r := range old[:excess] {
		if err := h.Delete(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func asRevision(obj runtime.Object) (*appsv1.ControllerRevision, error) {
	rev, ok := obj.(*appsv1.ControllerRevision)
	if !ok {
		return nil, fmt.Errorf("unexpected type %T for a controller revision", obj)
	}
	return rev, nil
}
