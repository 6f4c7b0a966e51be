package registry

func policyResources() []*Resource { return nil }
