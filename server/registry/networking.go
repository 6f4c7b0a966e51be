package registry

func networkingResources() []*Resource { return nil }
