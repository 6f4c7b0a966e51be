package apiserver

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Apply is a server-side apply (PATCH application/apply-patch+yaml) of
// patch, YAML or JSON, to the object ns/name of gvr for fieldManager,
// creating it when missing. force takes over fields other managers own.
func (l *Local) Apply(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, patch []byte, fieldManager string, force bool) (runtime.Object, error) {
	res, err := l.resource(gvr)
	if err != nil {
		return nil, err
	}
	if fieldManager == "" {
		return nil, apierrors.NewBadRequest("PATCH, application/apply-patch+yaml requests require fieldManager to be set")
	}
	if l.s.fields == nil {
		return nil, apierrors.NewInternalError(errors.New("patching is not available"))
	}
	opts := writeOptions{validation: validationStrict, fieldManager: fieldManager, applied: true}
	result, err := l.s.guaranteedUpdate(ctx, res, ns, name, true, opts, func(current runtime.Object) (runtime.Object, error) {
		var live runtime.Object
		if current != nil {
			live = current.DeepCopyObject()
		}
		return l.s.fields.Apply(res.GroupVersionKind(), live, patch, fieldManager, force, "")
	})
	if err != nil {
		return nil, err
	}
	return result.obj, nil
}
