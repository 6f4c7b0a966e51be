package apiserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/orch-dev/orch/server/registry"
	"github.com/orch-dev/orch/store"
)

// initialEventsEndAnnotation marks the bookmark that ends the initial
// events of a sendInitialEvents watch (client-go WatchList waits for it).
const initialEventsEndAnnotation = "k8s.io/initial-events-end"

// bookmarkInterval is how long after an event a watch with
// allowWatchBookmarks gets a bookmark carrying its progress.
const bookmarkInterval = time.Minute

// watchRequest is a parsed watch.
type watchRequest struct {
	res           *registry.Resource
	ns            string
	sel           selection
	fromRevision  int64 // watch changes after this revision
	initialEvents bool  // send the current objects first (ADDED)
	endBookmark   bool  // then the initial-events-end bookmark
	bookmarks     bool
	timeout       time.Duration
	media         mediaType
	tableRequest  *http.Request
}

func (s *Server) parseWatch(r *http.Request, res *registry.Resource, ns string) (*watchRequest, error) {
	q := r.URL.Query()
	mt, err := negotiate(r)
	if err != nil {
		return nil, err
	}
	if mt.As == "PartialObjectMetadataList" {
		mt.As = "PartialObjectMetadata"
	}
	sel, err := parseSelection(r, res)
	if err != nil {
		return nil, err
	}
	wr := &watchRequest{res: res, ns: ns, sel: sel, media: mt, tableRequest: r,
		bookmarks: isTrue(q.Get("allowWatchBookmarks"))}

	rv := q.Get("resourceVersion")
	switch sie := q.Get("sendInitialEvents"); sie {
	case "true":
		if q.Get("resourceVersionMatch") != "NotOlderThan" {
			return nil, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "",
				fieldErrors("sendInitialEvents", sie, "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan"))
		}
		if !wr.bookmarks {
			return nil, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "",
				fieldErrors("allowWatchBookmarks", "false", "allowWatchBookmarks must be set to true when sendInitialEvents is true"))
		}
		wr.initialEvents, wr.endBookmark = true, true
	case "false", "":
		if rv == "" || rv == "0" {
			// "Get state and start at most recent": synthetic ADDED events first.
			wr.initialEvents = sie == ""
		}
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid sendInitialEvents %q", sie))
	}
	if rv != "" && rv != "0" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rv))
		}
		if !wr.initialEvents {
			wr.fromRevision = n
		} else if n > s.store.Revision() {
			return nil, apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", n, s.store.Revision()), 1)
		}
	} else if !wr.initialEvents {
		wr.fromRevision = s.store.Revision()
	}

	// Kubernetes ends watches after a randomised 30-60 minutes by default.
	wr.timeout = 30*time.Minute + time.Duration(rand.Int64N(int64(30*time.Minute)))
	if t := q.Get("timeoutSeconds"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid timeoutSeconds %q", t))
		}
		if n > 0 {
			wr.timeout = time.Duration(n) * time.Second
		}
	}
	return wr, nil
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns string) {
	wr, err := s.parseWatch(r, res, ns)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	select {
	case s.watchSlots <- struct{}{}:
		defer func() { <-s.watchSlots }()
	default:
		s.writeError(w, r, apierrors.NewTooManyRequests("too many watches are open, please try again later", 1))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wr.timeout)
	defer cancel()
	go func() {
		// Stop streaming when the server shuts down.
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()

	prefix := listPrefix(res, ns)
	var initial []store.KeyValue
	if wr.initialEvents {
		page, err := s.store.List(ctx, prefix, store.ListOptions{})
		if err != nil {
			s.writeError(w, r, storeError(err, res.GroupVersionResource().GroupResource(), ""))
			return
		}
		initial, wr.fromRevision = page.KVs, page.Revision
	}
	watcher, err := s.store.Watch(ctx, prefix, wr.fromRevision)
	if err != nil {
		s.writeError(w, r, storeError(err, res.GroupVersionResource().GroupResource(), ""))
		return
	}
	defer watcher.Stop()

	out := newWatchEncoder(s, w, wr)
	w.Header().Set("Content-Type", out.contentType())
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	out.flush()

	lastRev := wr.fromRevision
	for i := range initial {
		kv := &initial[i]
		ok, _, err := s.matches(res, wr.sel, kv)
		if err != nil || !ok {
			continue
		}
		if err := out.send(watch.Added, kv); err != nil {
			return
		}
	}
	if wr.endBookmark {
		if err := out.bookmark(lastRev, true); err != nil {
			return
		}
	}
	out.flush()

	// A bookmark is due bookmarkInterval after the first event since the
	// last one: a bookmark that would repeat the last one's revision tells
	// the client nothing, so an idle watch gets none — it costs an idle
	// node's uplink nothing, and the server no wake-up a minute per watch
	// (a ticker per watch did that, bookmarks asked for or not).
	bookmark := time.NewTimer(bookmarkInterval)
	bookmark.Stop()
	defer bookmark.Stop()
	var bookmarkDue <-chan time.Time // nil while no bookmark is due
	for {
		select {
		case <-ctx.Done():
			return
		case <-bookmarkDue:
			bookmarkDue = nil
			if out.bookmark(lastRev, false) != nil {
				return
			}
			out.flush()
		case ev, ok := <-watcher.Events():
			if !ok {
				if err := watcher.Err(); err != nil && ctx.Err() == nil {
					_ = out.status(apierrors.NewResourceExpired(fmt.Sprintf("watch ended: %v; please relist", err)))
				}
				return
			}
			lastRev = ev.KV.ModRevision
			if wr.bookmarks && bookmarkDue == nil {
				bookmark.Reset(bookmarkInterval)
				bookmarkDue = bookmark.C
			}
			if err := s.sendEvent(out, wr, ev); err != nil {
				return
			}
			if len(watcher.Events()) == 0 {
				out.flush()
			}
		}
	}
}

// sendEvent filters one store event through the selectors: an object that
// leaves the selection is DELETED for this watcher, one that enters it ADDED.
func (s *Server) sendEvent(out *watchEncoder, wr *watchRequest, ev store.Event) error {
	newMatch, _, err := s.matches(wr.res, wr.sel, &ev.KV)
	if err != nil {
		return nil
	}
	if ev.Type == store.EventDelete {
		if newMatch {
			return out.send(watch.Deleted, &ev.KV)
		}
		return nil
	}
	oldMatch := false
	if ev.PrevKV != nil {
		oldMatch, _, _ = s.matches(wr.res, wr.sel, ev.PrevKV)
	}
	switch {
	case newMatch && oldMatch:
		return out.send(watch.Modified, &ev.KV)
	case newMatch:
		return out.send(watch.Added, &ev.KV)
	case oldMatch:
		// Deleted from this selection: show the new state at its revision.
		return out.send(watch.Deleted, &ev.KV)
	}
	return nil
}

// watchEncoder writes watch events in the negotiated framing: newline
// separated JSON, or length-prefixed protobuf WatchEvents.
type watchEncoder struct {
	s       *Server
	w       http.ResponseWriter
	wr      *watchRequest
	flusher http.Flusher
	buf     bytes.Buffer
}

func newWatchEncoder(s *Server, w http.ResponseWriter, wr *watchRequest) *watchEncoder {
	f, _ := w.(http.Flusher)
	return &watchEncoder{s: s, w: w, wr: wr, flusher: f}
}

func (e *watchEncoder) contentType() string {
	if e.wr.media.Type == mediaProtobuf {
		return mediaProtobuf + ";stream=watch"
	}
	return e.wr.media.contentType()
}

func (e *watchEncoder) flush() {
	if e.flusher != nil {
		e.flusher.Flush()
	}
}

// send writes an event for a stored object.
func (e *watchEncoder) send(t watch.EventType, kv *store.KeyValue) error {
	res := e.wr.res
	if e.wr.media.Type == mediaJSON && e.wr.media.As == "" {
		raw, err := e.s.servedJSON(res, kv)
		if err != nil {
			return nil
		}
		return e.writeJSON(t, raw)
	}
	obj, err := e.s.decodeStored(res, kv)
	if err != nil {
		return nil
	}
	return e.sendObject(t, obj)
}

func (e *watchEncoder) sendObject(t watch.EventType, obj runtime.Object) error {
	switch e.wr.media.As {
	case "Table":
		table, err := e.s.toTable(e.wr.tableRequest, e.wr.res, []runtime.Object{obj})
		if err != nil {
			return err
		}
		obj = table
	case "PartialObjectMetadata":
		obj = partialObjectMetadata(obj)
	}
	if e.wr.media.Type == mediaProtobuf {
		return e.writeProtobuf(t, obj)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return e.writeJSON(t, raw)
}

func (e *watchEncoder) writeJSON(t watch.EventType, raw []byte) error {
	e.buf.Reset()
	e.buf.WriteString(`{"type":"`)
	e.buf.WriteString(string(t))
	e.buf.WriteString(`","object":`)
	e.buf.Write(raw)
	e.buf.WriteString("}\n")
	_, err := e.w.Write(e.buf.Bytes())
	return err
}

func (e *watchEncoder) writeProtobuf(t watch.EventType, obj runtime.Object) error {
	raw, err := e.s.codecs.encode(mediaProtobuf, obj)
	if err != nil {
		return err
	}
	// The frame is a bare WatchEvent message (no "k8s\x00" envelope, as
	// Kubernetes' raw protobuf serializer writes it); the object inside
	// carries the envelope.
	ev := &metav1.WatchEvent{Type: string(t), Object: runtime.RawExtension{Raw: raw}}
	frame, err := ev.Marshal()
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(frame)))
	if _, err := e.w.Write(n[:]); err != nil {
		return err
	}
	_, err = e.w.Write(frame)
	return err
}

// bookmark sends a BOOKMARK: an empty object of the kind carrying only the
// resourceVersion (and the initial-events-end annotation when end is set).
func (e *watchEncoder) bookmark(rev int64, end bool) error {
	obj := e.wr.res.New()
	obj.GetObjectKind().SetGroupVersionKind(e.wr.res.GroupVersionKind())
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	m.SetResourceVersion(strconv.FormatInt(rev, 10))
	if end {
		m.SetAnnotations(map[string]string{initialEventsEndAnnotation: "true"})
	}
	if e.wr.media.Type == mediaProtobuf {
		return e.writeProtobuf(watch.Bookmark, obj)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return e.writeJSON(watch.Bookmark, raw)
}

// status sends an ERROR event and is the last thing a watch writes.
func (e *watchEncoder) status(err error) error {
	st := toStatus(err)
	defer e.flush()
	if e.wr.media.Type == mediaProtobuf {
		return e.writeProtobuf(watch.Error, st)
	}
	raw, merr := json.Marshal(st)
	if merr != nil {
		return merr
	}
	return e.writeJSON(watch.Error, raw)
}
