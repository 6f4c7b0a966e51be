package registry

// coreWorkloadResources: namespaces, pods, nodes, services, endpoints,
// events (core/v1).
func coreWorkloadResources() []*Resource { return nil }
