package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// selection is a parsed label + field selector.
type selection struct {
	labels labels.Selector
	fields fields.Selector
	// needsObject: the field selector uses fields beyond metadata.name and
	// metadata.namespace, so candidates must be fully decoded.
	needsObject bool
}

func (sel selection) empty() bool { return sel.labels.Empty() && sel.fields.Empty() }

func parseSelection(r *http.Request, res *registry.Resource) (selection, error) {
	q := r.URL.Query()
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return selection{}, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return selection{}, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
	}
	sel := selection{labels: ls, fields: fs}
	if fs.Empty() {
		return sel, nil
	}
	supported := selectableFields(res, res.New())
	for _, req := range fs.Requirements() {
		if _, ok := supported[req.Field]; !ok {
			return selection{}, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
		}
		if req.Field != "metadata.name" && req.Field != "metadata.namespace" {
			sel.needsObject = true
		}
	}
	return sel, nil
}

// selectableFields are the fields a field selector may use on obj.
func selectableFields(res *registry.Resource, obj runtime.Object) fields.Set {
	set := fields.Set{}
	if res.Fields != nil {
		for k, v := range res.Fields(obj) {
			set[k] = v
		}
	}
	if m, err := meta.Accessor(obj); err == nil {
		set["metadata.name"] = m.GetName()
		if res.Namespaced {
			set["metadata.namespace"] = m.GetNamespace()
		}
	}
	return set
}

// partialMeta is the part of a stored object's metadata a selector without
// object fields needs; decoding only it is many times cheaper than the
// object.
type partialMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

// matches reports whether a stored object is selected; obj is the decoded
// object when matching needed it (else nil).
func (s *Server) matches(res *registry.Resource, sel selection, kv *store.KeyValue) (bool, runtime.Object, error) {
	if sel.empty() {
		return true, nil, nil
	}
	if sel.needsObject {
		obj, err := s.decodeStored(res, kv)
		if err != nil {
			return false, nil, err
		}
		m, _ := meta.Accessor(obj)
		return sel.labels.Matches(labels.Set(m.GetLabels())) && sel.fields.Matches(selectableFields(res, obj)), obj, nil
	}
	var pm partialMeta
	var err error
	if raw, ok := storedMetadata(kv.Value); ok {
		err = json.Unmarshal(raw, &pm)
	} else {
		err = json.Unmarshal(kv.Value, &struct {
			Metadata *partialMeta `json:"metadata"`
		}{&pm})
	}
	if err != nil {
		return false, nil, fmt.Errorf("decode stored object %s: %w", kv.Key, err)
	}
	if !sel.labels.Matches(labels.Set(pm.Labels)) {
		return false, nil, nil
	}
	fs := fields.Set{"metadata.name": pm.Name}
	if res.Namespaced {
		fs["metadata.namespace"] = pm.Namespace
	}
	return sel.fields.Matches(fs), nil, nil
}

// continueToken is the list continuation Kubernetes clients pass back
// opaquely: the revision of the first page and the next key.
type continueToken struct {
	APIVersion string `json:"v"`
	Revision   int64  `json:"rv"`
	Start      string `json:"start"`
}

func encodeContinue(rev int64, startKey, prefix string) string {
	data, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", Revision: rev, Start: strings.TrimPrefix(startKey, prefix)})
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeContinue(token, prefix string) (continueToken, error) {
	var ct continueToken
	data, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil {
		err = json.Unmarshal(data, &ct)
	}
	if err != nil || ct.APIVersion != "meta.k8s.io/v1" || ct.Revision <= 0 || ct.Start == "" || strings.Contains(ct.Start, "..") {
		return ct, apierrors.NewBadRequest("The provided continue parameter is not valid: the token is malformed or was not issued by this server")
	}
	ct.Start = prefix + ct.Start
	return ct, nil
}

// listResult is one page of matching stored objects.
type listResult struct {
	kvs      []*store.KeyValue
	objs     []runtime.Object // decoded objects where matching decoded them (same index as kvs), else nil
	revision int64
	cont     string
	// remaining is the number of objects after this page (only without selectors).
	remaining *int64
}

// listQuery is what the query of a LIST asks of the store.
type listQuery struct {
	prefix string
	opts   store.ListOptions
	// limit is the page size the client asked for (0: everything).
	limit int64
}

// parseListQuery reads limit, continue, resourceVersion and
// resourceVersionMatch for a LIST of res in namespace ns.
func (s *Server) parseListQuery(r *http.Request, res *registry.Resource, ns string) (listQuery, error) {
	q := r.URL.Query()
	lq := listQuery{prefix: listPrefix(res, ns)}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 {
			return lq, apierrors.NewBadRequest(fmt.Sprintf("invalid limit %q", l))
		}
		lq.limit = n
	}
	if c := q.Get("continue"); c != "" {
		ct, err := decodeContinue(c, lq.prefix)
		if err != nil {
			return lq, err
		}
		if q.Get("resourceVersion") != "" && q.Get("resourceVersion") != "0" {
			return lq, apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
		}
		lq.opts.Revision, lq.opts.Start = ct.Revision, ct.Start
	} else if rv := q.Get("resourceVersion"); rv != "" && rv != "0" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			return lq, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rv))
		}
		switch q.Get("resourceVersionMatch") {
		case "Exact":
			lq.opts.Revision = n
		case "", "NotOlderThan":
			if n > s.store.Revision() {
				return lq, apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", n, s.store.Revision()), 1)
			}
		default:
			return lq, apierrors.NewBadRequest(fmt.Sprintf("invalid resourceVersionMatch %q", q.Get("resourceVersionMatch")))
		}
	}
	return lq, nil
}

// listStoreError maps a store error of a LIST to its Status.
func listStoreError(err error, opts store.ListOptions, res *registry.Resource) error {
	if opts.Start != "" && errorsIsCompacted(err) {
		return apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
	}
	return storeError(err, res.GroupVersionResource().GroupResource(), "")
}

// listObjects reads a page of res honouring limit, continue,
// resourceVersion and selectors.
func (s *Server) listObjects(ctx context.Context, res *registry.Resource, lq listQuery, sel selection) (*listResult, error) {
	prefix, opts, limit := lq.prefix, lq.opts, lq.limit
	out := &listResult{}
	pageSize := limit
	if !sel.empty() && limit > 0 && pageSize < 256 {
		pageSize = 256 // read ahead: most candidates may not match
	}
	// The count of the keys after a page is reported only without
	// selectors (it would count objects that do not match); with them the
	// store is spared the walk over the rest of the prefix, page after page.
	opts.SkipCount = !sel.empty()
	for {
		opts.Limit = pageSize
		if limit > 0 {
			opts.Limit = pageSize + 1 // one more tells whether a next page exists
		}
		page, err := s.store.List(ctx, prefix, opts)
		if err != nil {
			return nil, listStoreError(err, opts, res)
		}
		out.revision = page.Revision
		opts.Revision = page.Revision
		for i := range page.KVs {
			kv := &page.KVs[i]
			if limit > 0 && int64(len(out.kvs)) == limit {
				out.cont = encodeContinue(out.revision, kv.Key, prefix)
				if sel.empty() {
					n := page.RemainingCount + int64(len(page.KVs)-i)
					out.remaining = &n
				}
				return out, nil
			}
			ok, obj, err := s.matches(res, sel, kv)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			if ok {
				out.kvs = append(out.kvs, kv)
				out.objs = append(out.objs, obj)
			}
		}
		if limit == 0 || int64(len(page.KVs)) < opts.Limit {
			return out, nil
		}
		// The page was full but not enough matched: continue after its last key.
		opts.Start = page.KVs[len(page.KVs)-1].Key + "\x00"
		opts.Continue = ""
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	mt, err := negotiate(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sel, err := parseSelection(r, res)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	lq, err := s.parseListQuery(r, res, ns)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	start, err := s.jsonListWriter(w, r, res, mt)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if start != nil && lq.limit == 0 {
		s.streamList(ctx, w, r, res, lq, sel, start)
		return
	}
	lr, err := s.listObjects(ctx, res, lq, sel)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	listMeta := metav1.ListMeta{ResourceVersion: strconv.FormatInt(lr.revision, 10), Continue: lr.cont, RemainingItemCount: lr.remaining}

	if start != nil {
		l := start(listMeta)
		for i, kv := range lr.kvs {
			l.add(kv, lr.objs[i])
		}
		l.end()
		return
	}
	objs := make([]runtime.Object, len(lr.kvs))
	for i, kv := range lr.kvs {
		obj := lr.objs[i]
		if obj == nil {
			if obj, err = s.decodeStored(res, kv); err != nil {
				s.writeError(w, r, apierrors.NewInternalError(err))
				return
			}
		}
		objs[i] = obj
	}
	switch mt.As {
	case "Table":
		table, err := s.toTable(r, res, objs)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		table.ListMeta = listMeta
		s.writeTransformed(w, mt, http.StatusOK, table)
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		list := &metav1.PartialObjectMetadataList{ListMeta: listMeta}
		for _, o := range objs {
			list.Items = append(list.Items, *partialObjectMetadata(o))
		}
		list.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadataList"))
		s.writeTransformed(w, mt, http.StatusOK, list)
	default:
		list := res.NewList()
		if err := meta.SetList(list, objs); err != nil {
			s.writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		lm, _ := meta.ListAccessor(list)
		lm.SetResourceVersion(listMeta.ResourceVersion)
		lm.SetContinue(listMeta.Continue)
		lm.SetRemainingItemCount(listMeta.RemainingItemCount)
		list.GetObjectKind().SetGroupVersionKind(res.GroupVersion.WithKind(res.Kind + "List"))
		s.writeTransformed(w, mt, http.StatusOK, list)
	}
}

// rawList writes a typed JSON list by splicing stored objects, without
// decoding them: the common path of LIST.
type rawList struct {
	s     *Server
	res   *registry.Resource
	bw    *bufio.Writer
	comma bool
}

func (s *Server) startRawList(w http.ResponseWriter, res *registry.Resource, lm metav1.ListMeta) *rawList {
	lmJSON, _ := json.Marshal(lm)
	open := fmt.Sprintf(`{"kind":%q,"apiVersion":%q,"metadata":%s,"items":[`, res.Kind+"List", res.GroupVersion.String(), lmJSON)
	return &rawList{s: s, res: res, bw: startJSONList(w, mediaJSON, open)}
}

// add writes kv as it is stored (obj is not needed).
func (l *rawList) add(kv *store.KeyValue, _ runtime.Object) {
	if err := l.s.writeServedJSON(l.bw, l.res, kv, l.comma); err != nil {
		l.s.log.Error("encode stored object", "key", kv.Key, "err", err)
		return
	}
	l.comma = true
}

func (l *rawList) end() {
	l.bw.WriteString("]}\n")
	_ = l.bw.Flush()
}

// listChunk is how many keys a streamed LIST reads from the store at a
// time: enough to amortise a store snapshot, few enough that a LIST holds
// well under a megabyte of objects however large the collection.
const listChunk = 500

// streamList answers a LIST without limit in JSON (every informer's and
// most clients' LIST, and `kubectl get --chunk-size=0`) through the
// writer start returns. It reads the store one chunk at a time, each
// pinned to the revision of the first, and writes each chunk before
// reading the next: neither the memory nor the time to the
// first byte grows with a copy of the whole collection. A later chunk can
// only fail when the store's history no longer reaches back to the list's
// revision (a LIST outlasting thousands of writes, e.g. to a stalled
// client); the response, already begun, is then cut off, as upstream's
// streamed lists are, and the client lists again.
func (s *Server) streamList(ctx context.Context, w http.ResponseWriter, r *http.Request, res *registry.Resource, lq listQuery, sel selection, start listWriterFunc) {
	opts := lq.opts
	opts.Limit, opts.SkipCount, opts.Buffer = listChunk, true, &store.ListBuffer{}
	page, err := s.store.List(ctx, lq.prefix, opts)
	if err != nil {
		s.writeError(w, r, listStoreError(err, opts, res))
		return
	}
	l := start(metav1.ListMeta{ResourceVersion: strconv.FormatInt(page.Revision, 10)})
	for {
		for i := range page.KVs {
			kv := &page.KVs[i]
			ok, obj, err := s.matches(res, sel, kv)
			if err != nil {
				s.log.Error("list: cut off", "prefix", lq.prefix, "err", err)
				panic(http.ErrAbortHandler)
			}
			if ok {
				l.add(kv, obj)
			}
		}
		if page.Continue == "" {
			break
		}
		opts.Revision, opts.Start = page.Revision, page.KVs[len(page.KVs)-1].Key+"\x00"
		if page, err = s.store.List(ctx, lq.prefix, opts); err != nil {
			s.log.Warn("list: cut off", "prefix", lq.prefix, "revision", opts.Revision, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	l.end()
}

// writeServedJSON writes what servedJSON returns to w, preceded by a comma
// when comma is set, without copying the stored value. Nothing is written
// when it fails.
func (s *Server) writeServedJSON(w *bufio.Writer, res *registry.Resource, kv *store.KeyValue, comma bool) error {
	if res.Storage == nil {
		if i := bytes.Index(kv.Value, metadataOpen); i >= 0 {
			i += len(metadataOpen)
			if comma {
				w.WriteByte(',')
			}
			w.Write(kv.Value[:i])
			w.WriteString(`"resourceVersion":"`)
			var num [20]byte
			w.Write(strconv.AppendInt(num[:0], kv.ModRevision, 10))
			w.WriteByte('"')
			if i < len(kv.Value) && kv.Value[i] != '}' {
				w.WriteByte(',')
			}
			_, err := w.Write(kv.Value[i:])
			return err
		}
	}
	data, err := s.servedJSON(res, kv)
	if err != nil {
		return err
	}
	if comma {
		w.WriteByte(',')
	}
	_, err = w.Write(data)
	return err
}

// writeTransformed encodes an object already in its final form.
func (s *Server) writeTransformed(w http.ResponseWriter, mt mediaType, code int, obj runtime.Object) {
	data, err := s.codecs.encode(mt.Type, obj)
	if err != nil {
		data, _ = json.Marshal(toStatus(apierrors.NewInternalError(err)))
		writeRaw(w, http.StatusInternalServerError, mediaJSON, data)
		return
	}
	writeRaw(w, code, mt.contentType(), data)
}

func partialObjectMetadata(obj runtime.Object) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	// Typed objects implement metav1.Object themselves; their ObjectMeta
	// is reached through ObjectMetaAccessor.
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		if om, ok := a.GetObjectMeta().(*metav1.ObjectMeta); ok {
			p.ObjectMeta = *om
		}
	}
	p.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
	return p
}

func errorsIsCompacted(err error) bool { return errors.Is(err, store.ErrCompacted) }
