package apiserver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// A LIST answered in JSON is written one stored object at a time, from the
// stored bytes wherever the answer contains them as they are: the items of
// a typed list (rawList), the PartialObjectMetadata of a Table row or of a
// PartialObjectMetadataList (the stored metadata with its resourceVersion
// spliced in) and the objects of an includeObject=Object Table. Only a
// Table's cells need a decode, and not of the whole object: a copy
// without managedFields, and for the kinds rowElidedMaps lists without
// the values of their data maps. `kubectl get` of 10,000 ConfigMaps spent
// two thirds of the server's CPU in json.Unmarshal before.

// listWriter writes the items of a LIST response.
type listWriter interface {
	// add writes kv; obj is kv decoded when selecting it needed that,
	// else nil. A failure is logged and the object left out: the
	// response has begun.
	add(kv *store.KeyValue, obj runtime.Object)
	// end completes the response.
	end()
}

// listWriterFunc starts a response for a list with list metadata lm.
type listWriterFunc func(lm metav1.ListMeta) listWriter

// jsonListWriter returns how to write a JSON LIST of res transformed as mt
// asks, or nil when mt is not JSON (YAML and protobuf answers are
// encoded from decoded objects).
func (s *Server) jsonListWriter(w http.ResponseWriter, r *http.Request, res *registry.Resource, mt mediaType) (listWriterFunc, error) {
	if mt.Type != mediaJSON {
		return nil, nil
	}
	switch mt.As {
	case "":
		return func(lm metav1.ListMeta) listWriter { return s.startRawList(w, res, lm) }, nil
	case "Table":
		include, err := parseIncludeObject(r)
		if err != nil {
			return nil, err
		}
		return func(lm metav1.ListMeta) listWriter { return s.startTableList(w, res, include, lm) }, nil
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		return func(lm metav1.ListMeta) listWriter { return s.startMetadataList(w, res, mt.contentType(), lm) }, nil
	}
	return nil, nil
}

// startJSONList writes the response header and the JSON up to the first
// item; open is the text from the list's kind to the opening bracket of
// its items (or to the colon, for an itemWriter).
func startJSONList(w http.ResponseWriter, contentType string, open string) *bufio.Writer {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString(open)
	return bw
}

// itemWriter is what the Table and metadata lists share: a buffer the
// next item is assembled in, so that an item that fails leaves nothing
// half-written.
type itemWriter struct {
	s   *Server
	res *registry.Resource
	bw  *bufio.Writer
	// items is how many items were written.
	items int
	// nullIfEmpty: no items are JSON null, as a nil slice encodes
	// (upstream's PartialObjectMetadataList), instead of [].
	nullIfEmpty bool
	buf         []byte
}

// flushItem writes the item assembled in buf.
func (l *itemWriter) flushItem() {
	if l.items == 0 {
		l.bw.WriteByte('[')
	} else {
		l.bw.WriteByte(',')
	}
	l.bw.Write(l.buf)
	l.items++
}

func (l *itemWriter) end() {
	switch {
	case l.items > 0:
		l.bw.WriteString("]}\n")
	case l.nullIfEmpty:
		l.bw.WriteString("null}\n")
	default:
		l.bw.WriteString("[]}\n")
	}
	_ = l.bw.Flush()
}

// object returns obj, or kv decoded when obj is nil.
func (l *itemWriter) object(kv *store.KeyValue, obj runtime.Object) (runtime.Object, error) {
	if obj != nil {
		return obj, nil
	}
	return l.s.decodeStored(l.res, kv)
}

var partialObjectMetadataOpen = []byte(`{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{`)

// appendPartialObjectMetadata appends the PartialObjectMetadata of kv as
// JSON. When res is its own storage the stored metadata is spliced as it
// is (it was written by json.Marshal of the same ObjectMeta); obj, when
// not nil, is kv decoded.
func (l *itemWriter) appendPartialObjectMetadata(dst []byte, kv *store.KeyValue, obj runtime.Object) ([]byte, error) {
	if l.res.Storage == nil {
		if m, ok := storedMetadata(kv.Value); ok {
			dst = appendResourceVersion(dst, partialObjectMetadataOpen, len(partialObjectMetadataOpen), kv.ModRevision)
			// appendResourceVersion left the metadata open: continue
			// after the stored metadata's own opening brace.
			if m[1] != '}' {
				dst = append(dst, ',')
			}
			dst = append(dst, m[1:]...)
			return append(dst, '}'), nil
		}
	}
	obj, err := l.object(kv, obj)
	if err != nil {
		return dst, err
	}
	data, err := json.Marshal(partialObjectMetadata(obj))
	if err != nil {
		return dst, fmt.Errorf("encode metadata of %s: %w", kv.Key, err)
	}
	return append(dst, data...), nil
}

// metadataList writes a PartialObjectMetadataList.
type metadataList struct{ itemWriter }

func (s *Server) startMetadataList(w http.ResponseWriter, res *registry.Resource, contentType string, lm metav1.ListMeta) *metadataList {
	lmJSON, _ := json.Marshal(lm)
	open := fmt.Sprintf(`{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":%s,"items":`, lmJSON)
	bw := startJSONList(w, contentType, open)
	return &metadataList{itemWriter{s: s, res: res, bw: bw, nullIfEmpty: true}}
}

func (l *metadataList) add(kv *store.KeyValue, obj runtime.Object) {
	var err error
	if l.buf, err = l.appendPartialObjectMetadata(l.buf[:0], kv, obj); err != nil {
		l.s.log.Error("encode stored object", "key", kv.Key, "err", err)
		return
	}
	l.flushItem()
}

// tableList writes a meta.k8s.io/v1 Table, the same JSON toTable's table
// encodes to except that each row's metadata has its resourceVersion
// first.
type tableList struct {
	itemWriter
	include metav1.IncludeObjectPolicy
	// elided is the copy of a stored object without what its row does
	// not read (see cells), reused between rows.
	elided []byte
}

func (s *Server) startTableList(w http.ResponseWriter, res *registry.Resource, include metav1.IncludeObjectPolicy, lm metav1.ListMeta) *tableList {
	lmJSON, _ := json.Marshal(lm)
	columns, _ := json.Marshal(tableColumns(res))
	open := fmt.Sprintf(`{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":%s,"columnDefinitions":%s,"rows":`, lmJSON, columns)
	bw := startJSONList(w, mediaType{Type: mediaJSON, As: "Table"}.contentType(), open)
	return &tableList{itemWriter: itemWriter{s: s, res: res, bw: bw}, include: include}
}

func (l *tableList) add(kv *store.KeyValue, obj runtime.Object) {
	if err := l.appendRow(kv, obj); err != nil {
		l.s.log.Error("table row of stored object", "key", kv.Key, "err", err)
		return
	}
	l.flushItem()
}

// appendRow assembles kv's row in l.buf.
func (l *tableList) appendRow(kv *store.KeyValue, obj runtime.Object) error {
	cells, err := l.cells(kv, obj)
	if err != nil {
		return err
	}
	cellsJSON, err := json.Marshal(cells)
	if err != nil {
		return fmt.Errorf("encode cells: %w", err)
	}
	buf := append(l.buf[:0], `{"cells":`...)
	buf = append(buf, cellsJSON...)
	buf = append(buf, `,"object":`...)
	switch l.include {
	case metav1.IncludeMetadata:
		buf, err = l.appendPartialObjectMetadata(buf, kv, obj)
	case metav1.IncludeObject:
		var data []byte
		if obj != nil {
			data, err = json.Marshal(obj)
		} else {
			data, err = l.s.servedJSON(l.res, kv)
		}
		buf = append(buf, data...)
	default:
		buf = append(buf, "null"...) // an empty RawExtension
	}
	l.buf = append(buf, '}')
	return err
}

// cells computes kv's row from as little of it as the columns need: its
// metadata for the default columns, else a copy without managedFields
// (no row shows them; an object a controller or kubectl wrote carries
// a field set per manager) and, for the kinds rowElidedMaps lists,
// without the values of their data maps.
func (l *tableList) cells(kv *store.KeyValue, obj runtime.Object) ([]interface{}, error) {
	res := l.res
	if obj == nil && res.Storage == nil {
		if res.Row == nil {
			if m, ok := storedMetadata(kv.Value); ok {
				var om struct {
					Name              string      `json:"name"`
					CreationTimestamp metav1.Time `json:"creationTimestamp"`
				}
				if err := json.Unmarshal(m, &om); err != nil {
					return nil, fmt.Errorf("decode stored metadata %s: %w", kv.Key, err)
				}
				return defaultRow(om.Name, om.CreationTimestamp), nil
			}
		} else {
			var ok bool
			maps := rowElidedMaps(res.GroupVersionResource().GroupResource())
			if l.elided, ok = elideMapValues(l.elided[:0], kv.Value, maps); ok {
				thin := res.New()
				if err := json.Unmarshal(l.elided, thin); err != nil {
					return nil, fmt.Errorf("decode stored object %s: %w", kv.Key, err)
				}
				return res.Row(thin), nil
			}
		}
	}
	obj, err := l.object(kv, obj)
	if err != nil {
		return nil, err
	}
	if res.Row == nil {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		return defaultRow(m.GetName(), m.GetCreationTimestamp()), nil
	}
	return res.Row(obj), nil
}

// rowElidedMaps names the top-level maps of a resource whose rows count
// their keys but never read their values (registry's Row: DATA of
// ConfigMaps and Secrets), which are most of such an object's bytes.
// TestTableListMatchesToTable holds the two in step.
func rowElidedMaps(gr schema.GroupResource) []string {
	switch gr {
	case schema.GroupResource{Resource: "configmaps"}:
		return []string{"data", "binaryData"}
	case schema.GroupResource{Resource: "secrets"}:
		return []string{"data"}
	}
	return nil
}

// elideMapValues appends to dst a copy of the stored object obj in which
// every value of the top-level maps named by maps is "" (their keys stay,
// so their lengths do) and metadata has no managedFields (no row shows
// them; they are most of the metadata of an object kubectl wrote). It
// reports false when obj is not a compact JSON object.
func elideMapValues(dst, obj []byte, maps []string) ([]byte, bool) {
	ok := true
	dst, whole := appendMembers(dst, obj, func(dst, key, value []byte) []byte {
		switch {
		case len(value) == 0 || value[0] != '{':
		case quotedIn(key, maps):
			var inner bool
			dst, inner = appendMembers(dst, value, func(dst, _, _ []byte) []byte { return append(dst, `""`...) })
			ok = ok && inner
			return dst
		case quotedIn(key, []string{"metadata"}):
			var inner bool
			dst, inner = appendMembers(dst, value, func(dst, key, value []byte) []byte {
				if quotedIn(key, []string{"managedFields"}) {
					return nil
				}
				return append(dst, value...)
			})
			ok = ok && inner
			return dst
		}
		return append(dst, value...)
	})
	return dst, whole && ok
}

// appendMembers appends to dst a copy of the JSON object obj whose member
// values are what value appends (to the key and colon already appended);
// a member for which value returns nil is left out.
func appendMembers(dst, obj []byte, value func(dst, key, value []byte) []byte) ([]byte, bool) {
	dst = append(dst, '{')
	first := true
	ok := eachJSONField(obj, func(key, v []byte) {
		mark := len(dst)
		if !first {
			dst = append(dst, ',')
		}
		dst = append(dst, key...)
		dst = append(dst, ':')
		if out := value(dst, key, v); out != nil {
			dst, first = out, false
		} else {
			dst = dst[:mark]
		}
	})
	return append(dst, '}'), ok
}

// quotedIn reports whether the quoted JSON key is one of names.
func quotedIn(key []byte, names []string) bool {
	if len(key) < 2 {
		return false
	}
	for _, n := range names {
		if string(key[1:len(key)-1]) == n {
			return true
		}
	}
	return false
}
