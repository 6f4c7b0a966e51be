package registry

// coreWorkloadResources: namespaces, pods, nodes, services, endpoints,
// events (core/v1). Each kind lives in its own core_<kind>.go file.
func coreWorkloadResources() []*Resource {
	return []*Resource{
		namespacesResource(),
		podsResource(),
		nodesResource(),
		servicesResource(),
		endpointsResource(),
		coreEventsResource(),
	}
}
