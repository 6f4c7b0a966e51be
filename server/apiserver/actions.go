package apiserver

import (
	"context"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime/schema"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/orch-dev/orch/server/registry"
)

// serveAction serves a create-only subresource answered by a server hook
// (registry.Resource.Actions), such as serviceaccounts/token: the body is
// decoded as the action's kind and the hook's result is the answer.
func (s *Server) serveAction(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo, action registry.Action) {
	if ri.Verb != "create" {
		gr := res.GroupVersionResource().GroupResource()
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: gr.Group, Resource: gr.Resource + "/" + ri.Subresource}, ri.Verb))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	obj := action.New()
	_, ok := s.decodeCreate(w, r, ri.Subresource, action.GroupVersionKind, obj)
	if !ok {
		return
	}
	out, err := action.Create(ctx, ri.Namespace, ri.Name, obj)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.codecs.writeObject(w, r, http.StatusCreated, out)
}
