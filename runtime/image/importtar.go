package image

import (
	"archive/tar"
	"context"
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
		layers := make([]func() (io.ReadCloser, error), len(e.Layers))
		for i, l := range e.Layers {
			layers[i] = func() (io.ReadCloser, error) { return t.open(l) }
		}
		img, err := s.store(names, "", cb, layers)
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
		img, err := s.ingest(ctx, names, t, d, 0)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", d.Digest, err)
		}
		out = append(out, img)
	}
	return out, nil
}
