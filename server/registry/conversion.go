package registry

import "k8s.io/apimachinery/pkg/runtime"

// addConversions registers the conversions between versions that share one
// stored object: autoscaling/v1 ⇄ v2 HPAs (conversion_autoscaling.go) and
// core/v1 ⇄ events.k8s.io/v1 events (conversion_events.go).
func addConversions(s *runtime.Scheme) error {
	if err := addAutoscalingConversions(s); err != nil {
		return err
	}
	return addEventsConversions(s)
}
