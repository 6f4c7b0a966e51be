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
	return appendResourceVersion(make([]byte, 0, len(raw)+44), raw, i+len(metadataOpen), rev), true
}

// appendResourceVersion appends raw to dst with "resourceVersion" spliced
// in as the first member of the object whose opening brace ends raw[:i].
func appendResourceVersion(dst, raw []byte, i int, rev int64) []byte {
	dst = append(dst, raw[:i]...)
	dst = append(dst, `"resourceVersion":"`...)
	dst = strconv.AppendInt(dst, rev, 10)
	dst = append(dst, '"')
	if i < len(raw) && raw[i] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, raw[i:]...)
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
	end := jsonValueEnd(raw, start)
	if end < 0 {
		return nil, false
	}
	return raw[start:end], true
}

// jsonValueEnd returns the index just past the JSON value that starts at
// raw[i], or -1 when raw ends first. It expects what json.Marshal writes
// (compact, valid) and only tracks strings and nesting, so skipping a
// value costs one pass over its bytes and no allocation.
func jsonValueEnd(raw []byte, i int) int {
	depth := 0
	for j := i; j < len(raw); j++ {
		switch raw[j] {
		case '"':
			if j = jsonStringEnd(raw, j); j < 0 {
				return -1
			}
			if depth == 0 {
				return j + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
			if depth < 0 {
				return j // a scalar ended by its container
			}
		case ',':
			if depth == 0 {
				return j // a scalar ended by the next member
			}
		}
	}
	if depth == 0 && i < len(raw) {
		return len(raw) // a scalar at the end of raw
	}
	return -1
}

// jsonStringEnd returns the index of the quote that closes the string
// opened at raw[i], or -1. It jumps from quote to quote (bytes.IndexByte)
// rather than stepping through the string: values are most of the bytes.
func jsonStringEnd(raw []byte, i int) int {
	for k := i + 1; ; {
		q := bytes.IndexByte(raw[k:], '"')
		if q < 0 {
			return -1
		}
		q += k
		escapes := 0
		for p := q - 1; p > i && raw[p] == '\\'; p-- {
			escapes++
		}
		if escapes%2 == 0 {
			return q
		}
		k = q + 1
	}
}

// eachJSONField calls fn with the raw key (quoted, as stored) and value of
// every member of the JSON object obj (compact, as json.Marshal writes it).
// It reports false when obj is not such an object.
func eachJSONField(obj []byte, fn func(key, value []byte)) bool {
	if len(obj) < 2 || obj[0] != '{' {
		return false
	}
	i := 1
	if obj[i] == '}' {
		return i+1 == len(obj)
	}
	for {
		keyEnd := jsonValueEnd(obj, i)
		if keyEnd < 0 || obj[i] != '"' || keyEnd >= len(obj) || obj[keyEnd] != ':' {
			return false
		}
		valueEnd := jsonValueEnd(obj, keyEnd+1)
		if valueEnd < 0 || valueEnd >= len(obj) {
			return false
		}
		fn(obj[i:keyEnd], obj[keyEnd+1:valueEnd])
		switch obj[valueEnd] {
		case ',':
			i = valueEnd + 1
		case '}':
			return valueEnd+1 == len(obj)
		default:
			return false
		}
	}
}
