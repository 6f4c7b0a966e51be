package registry

func rbacResources() []*Resource { return nil }
