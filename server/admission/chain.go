// Package admission holds orch's built-in admission checks that need
// cluster state: ResourceQuota (refuse writes that would exceed a quota in
// the namespace) and LimitRanger (apply a namespace's LimitRange defaults
// to new pods and enforce its min/max/ratio constraints).
//
// They plug into the resource table through the BeginCreate/BeginUpdate
// hooks of registry.Resource, chaining with hooks already installed (the
// service IP allocator), and they read ResourceQuotas and LimitRanges
// through small listers the server gives them (informer caches). They never
// touch the store: quota usage between the quota controller's
// recalculations is kept in memory (see Quota).
package admission

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/registry"
)

type (
	beginCreateFunc = func(ctx context.Context, obj runtime.Object) (registry.FinishFunc, error)
	beginUpdateFunc = func(ctx context.Context, obj, old runtime.Object) (registry.FinishFunc, error)
)

// chainCreate makes first run before the BeginCreate hook r already has.
// When the existing hook refuses, what first reserved is rolled back.
func chainCreate(r *registry.Resource, first beginCreateFunc) {
	next := r.BeginCreate
	if next == nil {
		r.BeginCreate = first
		return
	}
	r.BeginCreate = func(ctx context.Context, obj runtime.Object) (registry.FinishFunc, error) {
		f1, err := first(ctx, obj)
		if err != nil {
			return nil, err
		}
		f2, err := next(ctx, obj)
		if err != nil {
			finish(ctx, f1, false)
			return nil, err
		}
		return combine(f1, f2), nil
	}
}

// chainUpdate is chainCreate for BeginUpdate.
func chainUpdate(r *registry.Resource, first beginUpdateFunc) {
	next := r.BeginUpdate
	if next == nil {
		r.BeginUpdate = first
		return
	}
	r.BeginUpdate = func(ctx context.Context, obj, old runtime.Object) (registry.FinishFunc, error) {
		f1, err := first(ctx, obj, old)
		if err != nil {
			return nil, err
		}
		f2, err := next(ctx, obj, old)
		if err != nil {
			finish(ctx, f1, false)
			return nil, err
		}
		return combine(f1, f2), nil
	}
}

// combine returns one FinishFunc calling both (either may be nil), the
// later hook's first, as deferred calls unwind.
func combine(outer, inner registry.FinishFunc) registry.FinishFunc {
	switch {
	case outer == nil:
		return inner
	case inner == nil:
		return outer
	}
	return func(ctx context.Context, success bool) {
		inner(ctx, success)
		outer(ctx, success)
	}
}

func finish(ctx context.Context, f registry.FinishFunc, success bool) {
	if f != nil {
		f(ctx, success)
	}
}
