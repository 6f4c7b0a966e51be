package apiserver

import (
	"context"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/orch-dev/orch/server/registry"
)

// serveEphemeral serves a create-only resource that is never stored
// (registry.Resource.Ephemeral): SubjectAccessReviews, TokenReviews. Like
// kube-apiserver's rest.Creater-only storages, only POST to the collection
// exists.
func (s *Server) serveEphemeral(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo) {
	gr := res.GroupVersionResource().GroupResource()
	if ri.Verb != "create" || ri.Name != "" || ri.Subresource != "" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(gr, ri.Verb))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	obj := res.New()
	_, ok := s.decodeCreate(w, r, "", res.GroupVersionKind(), obj)
	if !ok {
		return
	}
	if m, err := meta.Accessor(obj); err == nil && res.Namespaced {
		switch {
		case m.GetNamespace() == "":
			m.SetNamespace(ri.Namespace)
		case m.GetNamespace() != ri.Namespace:
			s.writeError(w, r, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
			return
		}
	}
	if res.Default != nil {
		res.Default(obj)
	}
	if res.Validate != nil {
		if errs := res.Validate(obj); len(errs) > 0 {
			m, _ := meta.Accessor(obj)
			s.writeError(w, r, apierrors.NewInvalid(res.GroupVersionKind().GroupKind(), m.GetName(), errs))
			return
		}
	}
	out, err := res.Ephemeral(ctx, obj)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeResourceObject(w, r, res, http.StatusCreated, out)
}
