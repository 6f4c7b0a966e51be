// Package image is the node's image store: it imports images from
// docker-save and OCI-layout tars (and, through Ingest, from any source of
// blobs such as a registry client), unpacks each layer once by its diff ID
// with whiteouts converted to overlayfs form, and hands out the layer
// directories an overlayfs mount needs.
//
// Layout of Options.Root:
//
//	layers/<diff-id hex>/     an unpacked layer, shared by every image using it
//	images/<config hex>.json  an image record: names, layer diff IDs, config
//	tmp/                      unpacking in progress (cleared on Open)
//
// The store does not talk to registries; a registry client implements
// BlobSource and calls Ingest with the descriptor it resolved.
// GarbageCollect removes unused images when the disk fills, as the
// kubelet's image GC does; the caller says which images are in use.
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
)

// ErrNotFound is returned for an unknown image.
var ErrNotFound = errors.New("image not found")

// Platform selects one image of a multi-platform index.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// HostPlatform is the platform of the running binary (arm is v7).
func HostPlatform() Platform {
	p := Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
	}
	return p
}

// Options configure a Store.
type Options struct {
	Root     string   // e.g. DATA/agent/images; required
	Platform Platform // default HostPlatform()
}

// Config is the part of an image's configuration a container needs.
type Config struct {
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
	User       string   `json:"User,omitempty"`
}

// Image is a stored image.
type Image struct {
	ID    string   `json:"id"`    // config digest, sha256:...
	Names []string `json:"names"` // normalized references, e.g. docker.io/library/busybox:latest
	// RepoDigests are repo@sha256:... references by the digest of the
	// manifest (or index) each name pointed at when it was pulled or
	// imported, newest first, as containerd's CRI reports them.
	RepoDigests []string `json:"repoDigests,omitempty"`
	Layers      []string `json:"layers"`
	Config      Config   `json:"config"`
	Platform    Platform `json:"platform"`
	Size        int64    `json:"size"` // unpacked bytes of its layers (as read from the tars)
}

// Store is an image store on local disk, safe for concurrent use.
type Store struct {
	root     string
	platform Platform
	usage    diskUsage  // of the filesystem holding root; statfs but in tests
	mu       sync.Mutex // serializes record updates and removals
	// lastUsed is GarbageCollect's memory of images by ID (under mu).
	lastUsed map[string]gcRecord
}

// Open opens (creating) the store at opts.Root.
func Open(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("image store: Root is required")
	}
	if opts.Platform.OS == "" {
		opts.Platform = HostPlatform()
	}
	if err := os.RemoveAll(filepath.Join(opts.Root, "tmp")); err != nil {
		return nil, fmt.Errorf("image store: clear tmp: %w", err)
	}
	for _, d := range []string{"layers", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(opts.Root, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return &Store{root: opts.Root, platform: opts.Platform, usage: statfsUsage}, nil
}

func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.root, "layers", hexOf(diffID))
}

func hexOf(digest string) string {
	_, hex, _ := strings.Cut(digest, ":")
	return hex
}

// List returns every image, sorted by first name.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list()
}

func (s *Store) list() ([]Image, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "images"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Image
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.root, "images", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		var img Image
		if err := json.Unmarshal(b, &img); err != nil {
			return nil, fmt.Errorf("list images: %s: %w", e.Name(), err)
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return firstName(out[i]) < firstName(out[j]) })
	return out, nil
}

func firstName(img Image) string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return img.ID
}

// Get finds an image by reference (normalized first) or by ID (full
// digest or its hex, or a unique hex prefix of at least 12 digits).
func (s *Store) Get(ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(ref)
}

func (s *Store) get(ref string) (Image, error) {
	imgs, err := s.list()
	if err != nil {
		return Image{}, err
	}
	if name, err := Normalize(ref); err == nil {
		for _, img := range imgs {
			for _, n := range img.Names {
				if n == name {
					return img, nil
				}
			}
		}
	}
	id := strings.TrimPrefix(ref, "sha256:")
	if len(id) >= 12 {
		var match []Image
		for _, img := range imgs {
			if strings.HasPrefix(hexOf(img.ID), id) {
				match = append(match, img)
			}
		}
		if len(match) == 1 {
			return match[0], nil
		}
	}
	return Image{}, fmt.Errorf("image %q: %w", ref, ErrNotFound)
}

// LowerDirs returns the image's layer directories top-most first, the
// order overlayfs' lowerdir option wants.
func (s *Store) LowerDirs(ref string) ([]string, error) {
	img, err := s.Get(ref)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		out = append(out, s.layerDir(img.Layers[i]))
	}
	return out, nil
}

// Remove removes ref: a name is untagged, and the image (with layers no
// other image uses) is deleted once it has no names. An ID deletes the
// image with all its names.
func (s *Store) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.get(ref)
	if err != nil {
		return err
	}
	if name, nerr := Normalize(ref); nerr == nil && contains(img.Names, name) && len(img.Names) > 1 {
		img.Names = remove(img.Names, name)
		return s.writeRecord(img)
	}
	return s.removeImage(img)
}

// gcLayers deletes layers no image references. Callers hold s.mu.
func (s *Store) gcLayers() error {
	imgs, err := s.list()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, img := range imgs {
		for _, l := range img.Layers {
			used[hexOf(l)] = true
		}
	}
	ents, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !used[e.Name()] {
			if err := os.RemoveAll(filepath.Join(s.root, "layers", e.Name())); err != nil {
				return fmt.Errorf("remove unused layer %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// writeRecord stores img, taking its names away from any other image.
// Callers hold s.mu.
func (s *Store) writeRecord(img Image) error {
	imgs, err := s.list()
	if err != nil {
		return err
	}
	for _, other := range imgs {
		if other.ID == img.ID {
			// Keep names and digests the image already had.
			for _, n := range other.Names {
				if !contains(img.Names, n) {
					img.Names = append(img.Names, n)
				}
			}
			for _, d := range other.RepoDigests {
				if !contains(img.RepoDigests, d) {
					img.RepoDigests = append(img.RepoDigests, d)
				}
			}
			continue
		}
		changed := false
		for _, n := range img.Names {
			if contains(other.Names, n) {
				other.Names = remove(other.Names, n)
				changed = true
			}
		}
		if changed {
			if err := s.writeFile(other); err != nil {
				return err
			}
		}
	}
	return s.writeFile(img)
}

func (s *Store) writeFile(img Image) error {
	b, err := json.Marshal(img)
	if err != nil {
		return err
	}
	p := filepath.Join(s.root, "images", hexOf(img.ID)+".json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write image record: %w", err)
	}
	return os.Rename(tmp, p)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func remove(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// Normalize turns a reference into its full form the way Docker does:
// "busybox" → "docker.io/library/busybox:latest". Digest references
// (name@sha256:...) are kept as they are.
func Normalize(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") || strings.HasPrefix(ref, "sha256:") {
		return "", fmt.Errorf("invalid image reference %q", ref)
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	domain, rest := "docker.io", name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			domain, rest = first, name[i+1:]
		}
	}
	if domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if rest == "" || rest != strings.ToLower(rest) {
		return "", fmt.Errorf("invalid image reference %q: repository must be lowercase", ref)
	}
	if hasDigest {
		return domain + "/" + rest + "@" + digest, nil
	}
	if i := strings.LastIndexByte(rest, ':'); i < 0 {
		rest += ":latest"
	}
	return domain + "/" + rest, nil
}

// BlobSource is where Ingest reads an image's blobs (manifests, configs,
// layers) by digest ("sha256:..."); a registry client implements it.
type BlobSource interface {
	Open(ctx context.Context, digest string) (io.ReadCloser, error)
}

// repository returns the repository of a normalized reference:
// "docker.io/library/busybox:1.36" → "docker.io/library/busybox".
func repository(ref string) string {
	if name, _, ok := strings.Cut(ref, "@"); ok {
		return name
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i]
	}
	return ref
}

// repoDigests returns the repo@digest reference of each name (once per
// repository) for the manifest or index digest the names point at.
func repoDigests(names []string, digest string) []string {
	if digest == "" {
		return nil
	}
	var out []string
	for _, n := range names {
		if d := repository(n) + "@" + digest; !contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// ImageRef is what the kubelet reports as a container's imageID for an
// image run as ref: the image's repo digest in ref's repository, else its
// first repo digest, else its ID (sha256:...), as containerd's CRI does.
func (img Image) ImageRef(ref string) string {
	if n, err := Normalize(ref); err == nil {
		repo := repository(n)
		for _, d := range img.RepoDigests {
			if repository(d) == repo {
				return d
			}
		}
	}
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}
