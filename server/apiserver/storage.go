package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// Key layout in the store:
//
//	/registry/<group or "core">/<resource>/<namespace>/<name>   namespaced
//	/registry/<group or "core">/<resource>/<name>               cluster-scoped
//
// Objects are stored as compact JSON of their storage version with an empty
// resourceVersion: the store's mod revision is the resourceVersion and is
// spliced in when the object is read.

func resourcePrefix(r *registry.Resource) string {
	sr := r.StorageResource()
	g := sr.GroupVersion.Group
	if g == "" {
		g = "core"
	}
	return "/registry/" + g + "/" + sr.Name + "/"
}

// listPrefix is the prefix of all objects of r in namespace ns ("" = all).
func listPrefix(r *registry.Resource, ns string) string {
	p := resourcePrefix(r)
	if ns != "" && r.Namespaced {
		p += ns + "/"
	}
	return p
}

func objectKey(r *registry.Resource, ns, name string) string {
	if r.Namespaced {
		return resourcePrefix(r) + ns + "/" + name
	}
	return resourcePrefix(r) + name
}

// decodeStored turns a stored value into a typed object of r's served kind
// with its resourceVersion set.
func (s *Server) decodeStored(r *registry.Resource, kv *store.KeyValue) (runtime.Object, error) {
	sr := r.StorageResource()
	obj := sr.New()
	if err := json.Unmarshal(kv.Value, obj); err != nil {
		return nil, fmt.Errorf("decode stored object %s: %w", kv.Key, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(sr.GroupVersionKind())
	if sr != r {
		out := r.New()
		if err := s.scheme.Convert(obj, out, nil); err != nil {
			return nil, fmt.Errorf("convert %s to %s: %w", sr.GroupVersionKind(), r.GroupVersionKind(), err)
		}
		obj = out
	}
	obj.GetObjectKind().SetGroupVersionKind(r.GroupVersionKind())
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	m.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
	return obj, nil
}

// encodeStored serialises obj (of r's served kind) for the store. It clears
// obj's resourceVersion.
func (s *Server) encodeStored(r *registry.Resource, obj runtime.Object) ([]byte, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	m.SetResourceVersion("")
	sr := r.StorageResource()
	out := obj
	if sr != r {
		out = sr.New()
		if err := s.scheme.Convert(obj, out, nil); err != nil {
			return nil, fmt.Errorf("convert %s to %s: %w", r.GroupVersionKind(), sr.GroupVersionKind(), err)
		}
	}
	out.GetObjectKind().SetGroupVersionKind(sr.GroupVersionKind())
	data, err := json.Marshal(out)
	obj.GetObjectKind().SetGroupVersionKind(r.GroupVersionKind())
	return data, err
}

// servedJSON returns the JSON of a stored object as served by r, with its
// resourceVersion, without decoding it when r is its own storage.
func (s *Server) servedJSON(r *registry.Resource, kv *store.KeyValue) ([]byte, error) {
	if r.Storage == nil {
		if out, ok := injectResourceVersion(kv.Value, kv.ModRevision); ok {
			return out, nil
		}
	}
	obj, err := s.decodeStored(r, kv)
	if err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}

var metadataOpen = []byte(`"metadata":{`)

// injectResourceVersion splices "resourceVersion" into the top-level
// metadata of a stored object. Stored objects are written by encodeStored
// (json.Marshal of a typed object: kind, apiVersion, then metadata, and no
// resourceVersion), so the first `"metadata":{` is the top-level one: a
// string value cannot contain unescaped quotes.
func injectResourceVersion(raw []byte, rev int64) ([]byte, bool) {
	i := bytes.Index(raw, metadataOpen)
	if i < 0 {
		return nil, false
	}
	i += len(metadataOpen)
	rv := strconv.FormatInt(rev, 10)
	out := make([]byte, 0, len(raw)+len(rv)+24)
	out = append(out, raw[:i]...)
	out = append(out, `"resourceVersion":"`...)
	out = append(out, rv...)
	out = append(out, '"')
	if i < len(raw) && raw[i] != '}' {
		out = append(out, ',')
	}
	return append(out, raw[i:]...), true
}

// storedMetadata returns the top-level metadata object of a stored value
// (see injectResourceVersion for why the first `"metadata":{` is it), so
// that selectors can decode a few hundred bytes instead of the object.
func storedMetadata(raw []byte) ([]byte, bool) {
	i := bytes.Index(raw, metadataOpen)
	if i < 0 {
		return nil, false
	}
	start := i + len(metadataOpen) - 1
	depth, inString := 0, false
	for j := start; j < len(raw); j++ {
		c := raw[j]
		switch {
		case inString:
			switch c {
			case '\\':
				j++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return raw[start : j+1], true
			}
		}
	}
	return nil, false
}
