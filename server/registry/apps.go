package registry

func appsResources() []*Resource { return nil }
