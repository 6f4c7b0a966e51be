package authz

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/controllers/informer"
)

// AggregationController fills the rules of ClusterRoles that have an
// aggregationRule with the rules of every ClusterRole its selectors match
// (kube-controller-manager's clusterrole-aggregation controller): admin,
// edit and view grow when a ClusterRole labelled aggregate-to-* appears.
//
// Any ClusterRole change may change any aggregate, and there are few
// aggregates, so a change marks the whole set dirty and one pass
// recomputes every aggregate from the cache: level-triggered, with
// coalesced events.
type AggregationController struct {
	client Client
	inf    *informer.Informer
	roles  informer.Lister[*rbacv1.ClusterRole]
	log    *slog.Logger
	dirty  chan struct{}
}

// NewAggregationController returns the controller; Run starts it.
func NewAggregationController(client Client, f *informer.Factory, log *slog.Logger) *AggregationController {
	if log == nil {
		log = slog.Default()
	}
	inf := f.For(clusterRolesGVR)
	return &AggregationController{client: client, inf: inf, roles: informer.NewLister[*rbacv1.ClusterRole](inf),
		log: log, dirty: make(chan struct{}, 1)}
}

// Run reconciles until ctx ends.
func (c *AggregationController) Run(ctx context.Context) error {
	mark := func(runtime.Object) { c.markDirty() }
	c.inf.AddHandler(informer.HandlerFuncs{AddFunc: mark, DeleteFunc: mark,
		UpdateFunc: func(_, obj runtime.Object) { c.markDirty() }})
	if !informer.WaitForSync(ctx, c.inf) {
		return nil
	}
	retry := time.NewTimer(0)
	if !retry.Stop() {
		<-retry.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.dirty:
		case <-retry.C:
		}
		if err := c.syncAll(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("cluster role aggregation failed; retrying", "err", err)
			retry.Reset(time.Second)
		}
	}
}

func (c *AggregationController) markDirty() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// syncAll writes every aggregate whose rules differ from the union of its
// sources'. It returns the first write error after trying them all.
func (c *AggregationController) syncAll(ctx context.Context) error {
	all := c.roles.List("", nil)
	slices.SortFunc(all, func(a, b *rbacv1.ClusterRole) int { return strings.Compare(a.Name, b.Name) })
	var firstErr error
	for _, role := range all {
		if role.AggregationRule == nil {
			continue
		}
		rules, err := AggregateRules(role, all)
		if err != nil {
			c.log.Warn("cluster role has an invalid aggregation rule", "clusterrole", role.Name, "err", err)
			continue
		}
		if apiequality.Semantic.DeepEqual(role.Rules, rules) {
			continue
		}
		updated := role.DeepCopy()
		updated.Rules = rules
		if _, err := c.client.Update(ctx, clusterRolesGVR, updated, "", "clusterrole-aggregation-controller"); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				// A newer version is on its way through the informer.
				continue
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// AggregateRules is the union of the rules of the roles among all (in
// order, without duplicates) that aggregate's selectors match.
func AggregateRules(aggregate *rbacv1.ClusterRole, all []*rbacv1.ClusterRole) ([]rbacv1.PolicyRule, error) {
	rules := []rbacv1.PolicyRule{}
	for _, ls := range aggregate.AggregationRule.ClusterRoleSelectors {
		sel, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil {
			return nil, err
		}
		for _, source := range all {
			if source.Name == aggregate.Name || !sel.Matches(labels.Set(source.Labels)) {
				continue
			}
			for _, r := range source.Rules {
				if !slices.ContainsFunc(rules, func(have rbacv1.PolicyRule) bool { return apiequality.Semantic.DeepEqual(have, r) }) {
					rules = append(rules, r)
				}
			}
		}
	}
	return rules, nil
}
