package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/authz"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

// authorizer wires server/authz into the API server. The API server needs
// its authorizer when it is built, while the authorizer reads informers of
// that same API, so the authorizer is filled in (start) right after the
// informer factory exists and before anything is served.
type authorizer struct{ cluster *authz.Cluster }

// authorize is apiserver.Config.Authorize.
func (a *authorizer) authorize(ctx context.Context, attrs apiserver.Attributes) (apiserver.Decision, string, error) {
	return a.cluster.Authorize(ctx, attrs)
}

// start builds the authorizer over factory's informers, makes the access
// reviews of table answer with it and RBAC writes pass its escalation
// checks.
func (a *authorizer) start(factory *informer.Factory, table *registry.Table) error {
	a.cluster = authz.New(factory)
	if err := a.cluster.Attach(table); err != nil {
		return fmt.Errorf("server: authorization: %w", err)
	}
	if err := a.cluster.AttachEscalationChecks(table); err != nil {
		return fmt.Errorf("server: authorization: %w", err)
	}
	if err := a.cluster.AttachNodeRestriction(table); err != nil {
		return fmt.Errorf("server: authorization: %w", err)
	}
	return nil
}

// ensureRBACPolicy is the post-start hook that creates the bootstrap
// policy before the API server reports ready.
func ensureRBACPolicy(ctx context.Context, local *apiserver.Local) error {
	if err := authz.EnsureBootstrapPolicy(ctx, local); err != nil {
		return fmt.Errorf("server: RBAC bootstrap policy: %w", err)
	}
	return nil
}

// runRoleAggregation fills aggregated ClusterRoles (admin, edit, view)
// until ctx ends.
func runRoleAggregation(ctx context.Context, api *apiserver.Server, factory *informer.Factory, log *slog.Logger) error {
	select {
	case <-api.Ready():
	case <-ctx.Done():
		return nil
	}
	return authz.NewAggregationController(api.Local(), factory, log.With("component", "clusterrole-aggregation-controller")).Run(ctx)
}
