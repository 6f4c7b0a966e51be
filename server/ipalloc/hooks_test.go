package ipalloc

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
)

// BeforeCreate and BeforeUpdate are BeginCreate/BeginUpdate whose store
// write succeeded: most tests care only about what ends up allocated.
func (s *Services) BeforeCreate(ctx context.Context, obj runtime.Object) error {
	finish, err := s.BeginCreate(ctx, obj)
	if err != nil {
		return err
	}
	finish(ctx, true)
	return nil
}

func (s *Services) BeforeUpdate(ctx context.Context, obj, old runtime.Object) error {
	finish, err := s.BeginUpdate(ctx, obj, old)
	if err != nil {
		return err
	}
	finish(ctx, true)
	return nil
}
