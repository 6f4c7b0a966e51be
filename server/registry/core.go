package registry

// coreResources is the core ("" group, v1) part of the table: the workload
// and cluster kinds (core_workload.go) and the configuration and storage
// kinds (core_config.go).
func coreResources() []*Resource {
	return append(coreWorkloadResources(), coreConfigResources()...)
}
