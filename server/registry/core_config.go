package registry

// coreConfigResources: configmaps, secrets, serviceaccounts,
// persistentvolumes, persistentvolumeclaims, resourcequotas, limitranges,
// replicationcontrollers, podtemplates.
func coreConfigResources() []*Resource { return nil }
