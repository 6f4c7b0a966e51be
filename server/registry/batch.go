package registry

func batchResources() []*Resource { return nil }
