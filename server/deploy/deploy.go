// Package deploy is orch's auto-deploy of manifests, as k3s does it: the
// YAML (or JSON) files in DATA/server/manifests are applied when the server
// starts and again whenever one changes, by server-side apply with field
// manager "orch-deploy", so that fields users change with kubectl and the
// deployer does not set survive every re-apply.
//
// The built-in manifests (package manifests, embedded in the binary) are
// written into that directory at start so users can read them, and applied
// from there like any other file. `--disable NAME` skips the built-in
// NAME.yaml: it is not written (and a copy a previous start wrote is
// removed). A file FILE.skip beside FILE keeps the deployer from writing
// or applying FILE, which is how a user takes over a built-in.
//
// Every object applied carries
//
//	label      deploy.orch.dev/manifest: <file name without extension, or a hash if that is no label value>
//	annotation deploy.orch.dev/source:   <file name>
//	annotation deploy.orch.dev/applied:  <sha256 of the file name and the document>
//
// An object whose applied hash already matches its document is left alone,
// so a restart does not undo a user's later edits of fields the manifest
// sets; a changed document is applied with force and wins. Deleting a file
// (or a document) deletes nothing in the cluster.
//
// A bad document is logged with its file and document index and skipped;
// the file's other documents, other files and the server go on. Failed
// files are retried at every poll. The package writes only through the API
// it is given and only reads and writes its one directory.
package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/orch-dev/orch/internal/dirwatch"
)

// FieldManager is the manager of the fields the deployer applies.
const FieldManager = "orch-deploy"

// The marks on every applied object; see the package comment.
const (
	LabelManifest     = "deploy.orch.dev/manifest"
	AnnotationSource  = "deploy.orch.dev/source"
	AnnotationApplied = "deploy.orch.dev/applied"
)

// DefaultPollInterval is how often the directory is read again besides
// the reads its inotify watch asks for, which cover every change on local
// file systems; the re-read catches the rest (a file system without
// inotify). Reading every 5 s instead woke an idle server up for nothing.
const DefaultPollInterval = 15 * time.Second

// skipSuffix marks a file the deployer must neither write nor apply.
const skipSuffix = ".skip"

// API is the part of the in-process API (apiserver.Local) the deployer
// uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Apply(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, patch []byte, fieldManager string, force bool) (runtime.Object, error)
}

// Kind is how a served kind is reached.
type Kind struct {
	Resource   schema.GroupVersionResource
	Namespaced bool
}

// KindFunc finds the resource serving a kind; ok is false when no
// resource serves it.
type KindFunc func(schema.GroupVersionKind) (kind Kind, ok bool)

// Options configure a Deployer.
type Options struct {
	// Dir is the manifest directory, DATA/server/manifests.
	Dir string
	// BuiltIn holds the built-in manifests, *.yaml at its root; may be nil.
	BuiltIn fs.FS
	// Disable names built-ins (file names without .yaml) to skip.
	Disable []string
	// Kinds maps kinds to resources (required).
	Kinds KindFunc
	// PollInterval defaults to DefaultPollInterval.
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Deployer applies the manifest directory.
type Deployer struct {
	api  API
	opts Options
	log  *slog.Logger

	// state of each file by name, as of its last successful apply.
	applied map[string]fileState
	// failed remembers the last error of a file, so a file that keeps
	// failing is logged once per change rather than at every poll.
	failed map[string]string
}

// fileState is what a file looked like when it was last applied.
type fileState struct {
	modTime time.Time
	size    int64
}

// New returns a Deployer; Run starts it.
func New(api API, opts Options) *Deployer {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Deployer{api: api, opts: opts, log: opts.Logger,
		applied: map[string]fileState{}, failed: map[string]string{}}
}

// Run writes the built-in manifests, applies the directory and re-applies
// changed files until ctx ends. Problems with single files are logged, not
// returned: only a directory it cannot create is an error.
func (d *Deployer) Run(ctx context.Context) error {
	if err := os.MkdirAll(d.opts.Dir, 0o700); err != nil {
		return fmt.Errorf("deploy: manifest directory: %w", err)
	}
	d.writeBuiltIns()
	t := time.NewTicker(d.opts.PollInterval)
	defer t.Stop()
	var changed <-chan struct{} // nil while the directory is not watched
	warned := false
	for {
		if changed == nil {
			// Watched before the read below, so no change after it is
			// missed.
			ch, err := dirwatch.Watch(ctx, d.opts.Dir)
			if err != nil && !warned {
				d.log.Warn("cannot watch the manifest directory; reading it every "+d.opts.PollInterval.String(), "err", err)
				warned = true
			}
			changed = ch
		}
		d.syncDir(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case _, ok := <-changed:
			if !ok {
				changed = nil // the directory went: read it, watch it again
			}
		}
	}
}

// writeBuiltIns copies the built-in manifests into the directory, unless
// disabled or skipped, and removes unchanged copies of disabled ones.
func (d *Deployer) writeBuiltIns() {
	if d.opts.BuiltIn == nil {
		return
	}
	names, err := fs.Glob(d.opts.BuiltIn, "*.yaml")
	if err != nil {
		d.log.Error("cannot list the built-in manifests", "err", err)
		return
	}
	known := map[string]bool{}
	for _, name := range names {
		base := strings.TrimSuffix(name, ".yaml")
		known[base] = true
		data, err := fs.ReadFile(d.opts.BuiltIn, name)
		if err != nil {
			d.log.Error("cannot read a built-in manifest", "file", name, "err", err)
			continue
		}
		dst := filepath.Join(d.opts.Dir, name)
		current, err := os.ReadFile(dst)
		exists := err == nil
		switch {
		case slices.Contains(d.opts.Disable, base):
			// Remove only our own copy: an edited file is the user's now.
			if exists && string(current) == string(data) {
				if err := os.Remove(dst); err != nil {
					d.log.Error("cannot remove a disabled built-in manifest", "file", dst, "err", err)
				}
			}
			d.log.Info("built-in manifest disabled", "name", base)
		case fileExists(dst + skipSuffix):
			d.log.Info("built-in manifest skipped: a .skip file exists", "file", dst+skipSuffix)
		case exists && string(current) == string(data):
		default:
			// syncDir runs after this, in the same goroutine: it never sees a
			// half-written file, and a crash mid-write is repaired next start.
			if err := os.WriteFile(dst, data, 0o600); err != nil {
				d.log.Error("cannot write a built-in manifest", "file", dst, "err", err)
			}
		}
	}
	for _, name := range d.opts.Disable {
		if !known[name] {
			d.log.Warn("--disable names no built-in manifest", "name", name, "builtIn", strings.Join(slices.Sorted(maps.Keys(known)), ","))
		}
	}
}

// syncDir applies every manifest file that changed since its last successful
// apply (all of them the first time), in name order.
func (d *Deployer) syncDir(ctx context.Context) {
	entries, err := os.ReadDir(d.opts.Dir)
	if err != nil {
		d.log.Error("cannot read the manifest directory", "dir", d.opts.Dir, "err", err)
		return
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		if !isManifest(name) || names[name+skipSuffix] || ctx.Err() != nil {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue // gone since ReadDir, or a directory named x.yaml
		}
		st := fileState{modTime: info.ModTime(), size: info.Size()}
		if prev, ok := d.applied[name]; ok && prev == st {
			continue
		}
		d.syncFile(ctx, name, st)
	}
}

func (d *Deployer) syncFile(ctx context.Context, name string, st fileState) {
	file := filepath.Join(d.opts.Dir, name)
	data, err := os.ReadFile(file)
	if err == nil {
		err = d.applyFile(ctx, name, data)
	}
	if err == nil {
		d.applied[name] = st
		delete(d.failed, name)
		return
	}
	if ctx.Err() != nil {
		return
	}
	msg := err.Error()
	if d.failed[name] != msg {
		d.log.Error("manifest not fully applied; will retry", "file", file, "err", err)
	} else {
		d.log.Debug("manifest still not fully applied", "file", file, "err", err)
	}
	d.failed[name] = msg
}

// applyFile applies every object of one manifest file, named name in the
// marks. Documents that fail do not stop the others; the error joins every
// failure, each prefixed with the file name and document index.
func (d *Deployer) applyFile(ctx context.Context, name string, data []byte) error {
	docs, errs := parseManifest(data)
	applied, unchanged := 0, 0
	for _, doc := range docs {
		changed, err := d.applyObject(ctx, name, doc)
		switch {
		case err != nil:
			errs = append(errs, &docError{where: doc.where(), err: err})
		case changed:
			applied++
		default:
			unchanged++
		}
	}
	if applied > 0 {
		d.log.Info("applied manifest", "file", name, "objects", applied, "unchanged", unchanged)
	}
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s: %w", name, err)
	}
	return errors.Join(errs...)
}

// applyObject applies one document unless the live object already carries
// its hash. It reports whether it wrote.
func (d *Deployer) applyObject(ctx context.Context, file string, doc document) (bool, error) {
	obj := doc.obj.DeepCopy()
	gvk := obj.GroupVersionKind()
	kind, ok := d.opts.Kinds(gvk)
	if !ok {
		return false, fmt.Errorf("%s %q: no matches for kind %q in version %q", obj.GetKind(), obj.GetName(), gvk.Kind, gvk.GroupVersion())
	}
	ns := obj.GetNamespace()
	switch {
	case kind.Namespaced && ns == "":
		ns = "default" // as kubectl apply does
		obj.SetNamespace(ns)
	case !kind.Namespaced:
		ns = ""
		obj.SetNamespace("")
	}
	body, err := obj.MarshalJSON()
	if err != nil {
		return false, fmt.Errorf("%s %q: %w", gvk.Kind, obj.GetName(), err)
	}
	hash := documentHash(file, body)
	if live, err := d.api.Get(ctx, kind.Resource, ns, obj.GetName()); err == nil {
		if m, err := meta.Accessor(live); err == nil && m.GetAnnotations()[AnnotationApplied] == hash {
			return false, nil
		}
	} else if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("get %s %s: %w", kind.Resource.Resource, objectName(ns, obj.GetName()), err)
	}
	mark(obj, file, hash)
	body, err = obj.MarshalJSON()
	if err != nil {
		return false, fmt.Errorf("%s %q: %w", gvk.Kind, obj.GetName(), err)
	}
	// Force: a changed manifest is the source of truth for what it sets.
	if _, err := d.api.Apply(ctx, kind.Resource, ns, obj.GetName(), body, FieldManager, true); err != nil {
		return false, fmt.Errorf("apply %s %s: %w", kind.Resource.Resource, objectName(ns, obj.GetName()), err)
	}
	return true, nil
}

// mark sets the deployer's label and annotations on obj.
func mark(obj *unstructured.Unstructured, file, hash string) {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManifest] = manifestLabel(file)
	obj.SetLabels(labels)
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationSource] = file
	ann[AnnotationApplied] = hash
	obj.SetAnnotations(ann)
}

// manifestLabel is the file name without its extension when that is a
// valid label value, else the first 40 hex digits of its hash.
func manifestLabel(file string) string {
	base := strings.TrimSuffix(file, path.Ext(file))
	if len(validation.IsValidLabelValue(base)) == 0 {
		return base
	}
	sum := sha256.Sum256([]byte(file))
	return hex.EncodeToString(sum[:])[:40]
}

// documentHash identifies one document of one file: moving an object to
// another file re-applies it, so its source annotation follows.
func documentHash(file string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(file))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func objectName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// isManifest: the extensions k3s applies. Hidden files (editor swap files,
// half-written copies) are not manifests.
func isManifest(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch path.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
