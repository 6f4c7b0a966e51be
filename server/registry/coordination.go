package registry

func coordinationResources() []*Resource { return nil }
