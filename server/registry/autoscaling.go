package registry

func autoscalingResources() []*Resource { return nil }
