package registry

func storageResources() []*Resource { return nil }
