package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// ImportFile imports every image in a docker-save or OCI-layout tar file.
func (s *Store) ImportFile(ctx context.Context, file string) ([]Image, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	imgs, err := s.Import(ctx, f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	return imgs, nil
}

// Import imports every image in a docker-save or OCI-layout tar (not
// compressed). For multi-platform indexes only the store's platform is
// imported. A tar that is both (docker ≥ 25 writes both) is read as
// docker-save, which carries the tags.
func (s *Store) Import(ctx context.Context, r io.ReaderAt, size int64) ([]Image, error) {
	t, err := indexTar(r, size)
	if err != nil {
		return nil, err
	}
	if _, ok := t.files["manifest.json"]; ok {
		return s.importDockerSave(ctx, t)
	}
	if _, ok := t.files["index.json"]; ok {
		return s.importOCILayout(ctx, t)
	}
	return nil, errors.New("neither a docker-save (manifest.json) nor an OCI layout (index.json) tar")
}

// tarIndex gives random access to the regular files of a tar.
type tarIndex struct {
	r     io.ReaderAt
	files map[string]tarEntry
	links map[string]string // symlinks, resolved on lookup
}

type tarEntry struct{ off, size int64 }

type offsetReader struct {
	r   io.ReaderAt
	off int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.ReadAt(p, o.off)
	o.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func indexTar(r io.ReaderAt, size int64) (*tarIndex, error) {
	or := &offsetReader{r: io.NewSectionReader(r, 0, size)}
	tr := tar.NewReader(or)
	t := &tarIndex{r: r, files: map[string]tarEntry{}, links: map[string]string{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			// tar.Reader reads headers block by block without buffering
			// ahead, so the data starts where the reader now stands.
			t.files[name] = tarEntry{off: or.off, size: hdr.Size}
		case tar.TypeSymlink:
			t.links[name] = path.Join(path.Dir(name), hdr.Linkname)
		}
	}
}

func (t *tarIndex) open(name string) (io.ReadCloser, error) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for i := 0; i < 8; i++ {
		if e, ok := t.files[name]; ok {
			return io.NopCloser(io.NewSectionReader(t.r, e.off, e.size)), nil
		}
		target, ok := t.links[name]
		if !ok {
			break
		}
		name = strings.TrimPrefix(path.Clean("/"+target), "/")
	}
	return nil, fmt.Errorf("%s: not in the tar", name)
}

func (t *tarIndex) readJSON(name string, v any) error {
	rc, err := t.open(name)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, maxManifestSize)).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	return nil
}

// Open implements BlobSource over an OCI layout's blobs directory.
func (t *tarIndex) Open(_ context.Context, digest string) (io.ReadCloser, error) {
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok || strings.ContainsAny(hex, "/.") {
		return nil, fmt.Errorf("bad digest %q", digest)
	}
	return t.open("blobs/" + alg + "/" + hex)
}

type dockerSaveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Store) importDockerSave(ctx context.Context, t *tarIndex) ([]Image, error) {
	var entries []dockerSaveEntry
	if err := t.readJSON("manifest.json", &entries); err != nil {
		return nil, err
	}
	indexed := t.ociManifestsByName()
	var out []Image
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var names []string
		for _, tag := range e.RepoTags {
			n, err := Normalize(tag)
			if err != nil {
				return nil, err
			}
			names = append(names, n)
		}
		rc, err := t.open(e.Config)
		if err != nil {
			return nil, err
		}
		cb, err := io.ReadAll(io.LimitReader(rc, maxManifestSize))
		rc.Close()
		if err != nil {
			return nil, err
		}
		var digests []string
		for _, n := range names {
			d := indexed[n]
			if d == "" {
				if d, err = t.dockerSaveManifestDigest(cb, e.Layers); err != nil {
					return nil, fmt.Errorf("image %v: %w", e.RepoTags, err)
				}
			}
			digests = append(digests, repoDigests([]string{n}, d)...)
		}
		layers := make([]func() (io.ReadCloser, error), len(e.Layers))
		for i, l := range e.Layers {
			layers[i] = func() (io.ReadCloser, error) { return t.open(l) }
		}
		img, err := s.store(names, digests, "", cb, layers)
		if err != nil {
			return nil, fmt.Errorf("image %v: %w", e.RepoTags, err)
		}
		out = append(out, img)
	}
	return out, nil
}

// Annotations naming an image in an OCI layout's index.json.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

func (s *Store) importOCILayout(ctx context.Context, t *tarIndex) ([]Image, error) {
	var idx manifest
	if err := t.readJSON("index.json", &idx); err != nil {
		return nil, err
	}
	var out []Image
	for _, d := range idx.Manifests {
		var names []string
		name := d.Annotations[annotationContainerdName]
		if name == "" {
			// A bare tag ("latest") names no repository; only a full
			// reference is usable.
			if ref := d.Annotations[annotationRefName]; strings.ContainsAny(ref, "/:") {
				name = ref
			}
		}
		if name != "" {
			n, err := Normalize(name)
			if err != nil {
				return nil, err
			}
			names = []string{n}
		}
		img, err := s.ingest(ctx, names, repoDigests(names, d.Digest), t, d, 0)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", d.Digest, err)
		}
		out = append(out, img)
	}
	return out, nil
}

// ociManifestsByName maps image names to manifest digests from the
// index.json of a tar that is also an OCI layout (docker ≥ 25 writes
// both): containerd imports such a tar by its index, so those digests are
// the images' repo digests.
func (t *tarIndex) ociManifestsByName() map[string]string {
	out := map[string]string{}
	if _, ok := t.files["oci-layout"]; !ok {
		return out
	}
	var idx manifest
	if err := t.readJSON("index.json", &idx); err != nil {
		return out
	}
	for _, d := range idx.Manifests {
		if n, err := Normalize(d.Annotations[annotationContainerdName]); err == nil {
			out[n] = d.Digest
		}
	}
	return out
}

// Media types of the manifest containerd writes for a docker-save image.
const (
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerManifestSchemaVersion = 2
)

// dockerSaveManifestDigest is the digest of the Docker manifest
// containerd writes when it imports a docker-save image, which has none
// of its own (archive.ImportIndex): schema 2, the config and each layer
// blob as stored in the tar, layers typed by their compression. k3s and
// containerd report it as the image's repo digest, so orch does too.
func (t *tarIndex) dockerSaveManifestDigest(configBlob []byte, layerFiles []string) (string, error) {
	m := struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        Descriptor   `json:"config"`
		Layers        []Descriptor `json:"layers"`
	}{
		SchemaVersion: dockerManifestSchemaVersion,
		MediaType:     MediaTypeDockerManifest,
		Config:        Descriptor{MediaType: mediaTypeDockerConfig, Digest: digestOf(configBlob), Size: int64(len(configBlob))},
		Layers:        []Descriptor{},
	}
	for _, f := range layerFiles {
		d, err := t.layerDescriptor(f)
		if err != nil {
			return "", err
		}
		m.Layers = append(m.Layers, d)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return digestOf(b), nil
}

// layerDescriptor hashes one layer blob of the tar and types it as
// containerd does: gzip or zstd magic means compressed (both typed gzip
// by containerd's importer), anything else is a plain tar.
func (t *tarIndex) layerDescriptor(name string) (Descriptor, error) {
	rc, err := t.open(name)
	if err != nil {
		return Descriptor{}, err
	}
	defer rc.Close()
	h := sha256.New()
	br := bufio.NewReader(rc)
	head, _ := br.Peek(4)
	n, err := io.Copy(h, br)
	if err != nil {
		return Descriptor{}, fmt.Errorf("read layer %s: %w", name, err)
	}
	mt := mediaTypeDockerLayer
	if bytes.HasPrefix(head, []byte{0x1f, 0x8b, 0x08}) || bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		mt = mediaTypeDockerLayerGzip
	}
	return Descriptor{MediaType: mt, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}
