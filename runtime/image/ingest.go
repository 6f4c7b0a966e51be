package image

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Media types the store understands.
const (
	MediaTypeOCIIndex        = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIManifest     = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeDockerList      = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest  = "application/vnd.docker.distribution.manifest.v2+json"
	maxManifestSize          = 4 << 20
	whiteoutPrefix           = ".wh."
	whiteoutOpaque           = ".wh..wh..opq"
	overlayOpaqueXattr       = "trusted.overlay.opaque"
	overlayOpaqueXattrValue  = "y"
	mediaTypeLayerZstdSuffix = "+zstd"
)

// Descriptor points at a blob, as in OCI indexes and manifests.
type Descriptor struct {
	MediaType   string            `json:"mediaType,omitempty"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type manifest struct {
	MediaType string       `json:"mediaType,omitempty"`
	Manifests []Descriptor `json:"manifests,omitempty"` // index / manifest list
	Config    Descriptor   `json:"config"`
	Layers    []Descriptor `json:"layers"`
}

type imageConfigFile struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
	Config       Config `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// Ingest stores the image desc points at (a manifest, or an index from
// which the store's platform is picked), reading blobs from src, and names
// it ref (may be empty). resolved is the digest ref resolved to, the
// index's when the caller picked desc from one (empty: desc's); it makes
// the image's repo digest. It is the entry point for registry pulls.
func (s *Store) Ingest(ctx context.Context, ref, resolved string, src BlobSource, desc Descriptor) (Image, error) {
	var names []string
	if ref != "" {
		n, err := Normalize(ref)
		if err != nil {
			return Image{}, err
		}
		names = []string{n}
	}
	if resolved == "" {
		resolved = desc.Digest
	}
	img, err := s.ingest(ctx, names, repoDigests(names, resolved), src, desc, 0)
	if err != nil {
		if ref != "" {
			return Image{}, fmt.Errorf("%s: %w", ref, err)
		}
		return Image{}, err
	}
	return img, nil
}

// ingest stores the image desc points at; digests are the repo digests
// of names, by the digest of the top-level manifest or index.
func (s *Store) ingest(ctx context.Context, names, digests []string, src BlobSource, desc Descriptor, depth int) (Image, error) {
	if depth > 2 {
		return Image{}, errors.New("nested indexes too deep")
	}
	b, err := readBlob(ctx, src, desc.Digest, maxManifestSize)
	if err != nil {
		return Image{}, fmt.Errorf("read manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Image{}, fmt.Errorf("decode manifest %s: %w", desc.Digest, err)
	}
	mt := desc.MediaType
	if m.MediaType != "" {
		mt = m.MediaType
	}
	if mt == MediaTypeOCIIndex || mt == MediaTypeDockerList || (mt == "" && len(m.Manifests) > 0) {
		d, err := s.pick(m.Manifests)
		if err != nil {
			return Image{}, err
		}
		return s.ingest(ctx, names, digests, src, d, depth+1)
	}
	cb, err := readBlob(ctx, src, m.Config.Digest, maxManifestSize)
	if err != nil {
		return Image{}, fmt.Errorf("read image config: %w", err)
	}
	layers := make([]func() (io.ReadCloser, error), len(m.Layers))
	for i, l := range m.Layers {
		if strings.HasSuffix(l.MediaType, mediaTypeLayerZstdSuffix) {
			return Image{}, fmt.Errorf("layer %s: zstd layers are not supported", l.Digest)
		}
		layers[i] = func() (io.ReadCloser, error) {
			rc, err := src.Open(ctx, l.Digest)
			if err != nil {
				return nil, err
			}
			return verifying(rc, l.Digest)
		}
	}
	return s.store(names, digests, m.Config.Digest, cb, layers)
}

// pick chooses the manifest for the store's platform from an index.
func (s *Store) pick(list []Descriptor) (Descriptor, error) {
	var seen []string
	for _, d := range list {
		if d.Platform == nil {
			continue
		}
		seen = append(seen, platformString(*d.Platform))
		if matchPlatform(s.platform, *d.Platform) {
			return d, nil
		}
	}
	return Descriptor{}, fmt.Errorf("no image for platform %s in index (has %s)", platformString(s.platform), strings.Join(seen, ", "))
}

func platformString(p Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func matchPlatform(want, have Platform) bool {
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	norm := func(arch, v string) string {
		if arch == "arm64" && v == "v8" {
			return ""
		}
		return v
	}
	wv, hv := norm(want.Architecture, want.Variant), norm(have.Architecture, have.Variant)
	return wv == "" || hv == "" || wv == hv
}

// store unpacks missing layers and writes the image record. configDigest
// is the image ID; layers open each layer blob (compressed or not) in
// manifest order.
func (s *Store) store(names, digests []string, configDigest string, configBlob []byte, layers []func() (io.ReadCloser, error)) (Image, error) {
	if d := digestOf(configBlob); configDigest != "" && d != configDigest {
		return Image{}, fmt.Errorf("image config digest is %s, expected %s", d, configDigest)
	}
	var cfg imageConfigFile
	if err := json.Unmarshal(configBlob, &cfg); err != nil {
		return Image{}, fmt.Errorf("decode image config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return Image{}, fmt.Errorf("image config lists %d layers, manifest %d", len(cfg.RootFS.DiffIDs), len(layers))
	}
	img := Image{
		ID:          digestOf(configBlob),
		Names:       names,
		RepoDigests: digests,
		Layers:      cfg.RootFS.DiffIDs,
		Config:      cfg.Config,
		Platform:    Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant},
	}
	for i, diffID := range cfg.RootFS.DiffIDs {
		if !strings.HasPrefix(diffID, "sha256:") || len(hexOf(diffID)) != 64 {
			return Image{}, fmt.Errorf("bad layer diff ID %q", diffID)
		}
		n, err := s.unpack(diffID, layers[i])
		if err != nil {
			return Image{}, fmt.Errorf("layer %s: %w", diffID, err)
		}
		img.Size += n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeRecord(img); err != nil {
		return Image{}, err
	}
	return img, nil
}

// unpack extracts one layer into layers/<diff ID> unless it is there,
// verifying the diff ID, and returns the uncompressed size read.
func (s *Store) unpack(diffID string, open func() (io.ReadCloser, error)) (int64, error) {
	dst := s.layerDir(diffID)
	if st, err := os.Stat(dst); err == nil && st.IsDir() {
		return 0, nil
	}
	rc, err := open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	r, err := decompress(rc)
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	if err := unpackLayer(tmp, cr); err != nil {
		return 0, err
	}
	// Read any tar padding so the hash covers the whole stream.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return 0, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return 0, fmt.Errorf("content has diff ID %s", got)
	}
	if err := os.Rename(tmp, dst); err != nil && !errors.Is(err, os.ErrExist) {
		if st, serr := os.Stat(dst); serr == nil && st.IsDir() {
			return cr.n, nil // a concurrent import won
		}
		return 0, err
	}
	return cr.n, nil
}

func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return gzip.NewReader(br)
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		return nil, errors.New("zstd layers are not supported")
	}
	return br, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func readBlob(ctx context.Context, src BlobSource, digest string, limit int64) ([]byte, error) {
	rc, err := src.Open(ctx, digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", digest, limit)
	}
	if d := digestOf(b); strings.HasPrefix(digest, "sha256:") && d != digest {
		return nil, fmt.Errorf("blob %s has digest %s", digest, d)
	}
	return b, nil
}

// verifying checks, at EOF, that what was read has the given digest.
func verifying(rc io.ReadCloser, digest string) (io.ReadCloser, error) {
	if !strings.HasPrefix(digest, "sha256:") {
		return nil, fmt.Errorf("unsupported digest %q", digest)
	}
	return &verifyReader{rc: rc, h: sha256.New(), want: digest}, nil
}

type verifyReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	want string
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, fmt.Errorf("blob %s has digest %s", v.want, got)
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }
