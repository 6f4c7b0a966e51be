package registry

func eventsResources() []*Resource { return nil }
