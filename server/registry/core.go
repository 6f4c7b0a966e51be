package registry

func coreResources() []*Resource { return nil }
