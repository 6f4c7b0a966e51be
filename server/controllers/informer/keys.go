package informer

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// Key is the cache key of an object: "namespace/name", or "name" for a
// cluster-scoped object (client-go's MetaNamespaceKeyFunc format, so keys
// read the same in logs).
func Key(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// KeyOf returns Key of obj's metadata.
func KeyOf(obj runtime.Object) (string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", fmt.Errorf("object %T has no metadata: %w", obj, err)
	}
	if m.GetName() == "" {
		return "", fmt.Errorf("object %T has no name", obj)
	}
	return Key(m.GetNamespace(), m.GetName()), nil
}

// SplitKey splits a key made by Key.
func SplitKey(key string) (namespace, name string) {
	if ns, n, ok := strings.Cut(key, "/"); ok {
		return ns, n
	}
	return "", key
}
