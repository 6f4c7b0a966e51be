package registry

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Docker Hub's names: images without a domain live there, under library/
// when they have no namespace, and are served by registry-1.docker.io.
const (
	defaultDomain    = "docker.io"
	legacyDomain     = "index.docker.io"
	defaultEndpoint  = "registry-1.docker.io"
	officialRepoPath = "library/"
	maxNameLength    = 255
)

// referenceGrammar is the grammar of github.com/distribution/reference,
// compiled on first use: every orch process runs this package's
// initialisation, container shims and inits included, and compiling these
// patterns (the bounded repetitions {0,127} and {64} unroll into long
// programs) cost each one about 150 KB of heap and 2,000 allocations at
// start for a parser that only image pulls and imports use.
var referenceGrammar = sync.OnceValue(func() *grammar {
	return &grammar{
		pathComponent: regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`),
		domain:        regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`),
		tag:           regexp.MustCompile(`^[\w][\w.-]{0,127}$`),
		sha256:        regexp.MustCompile(`^sha256:[a-f0-9]{64}$`),
	}
})

type grammar struct {
	pathComponent, domain, tag, sha256 *regexp.Regexp
}

// Reference is a parsed image reference in its full form:
// "busybox" is Domain docker.io, Path library/busybox, Tag latest.
type Reference struct {
	Domain string // registry host[:port], e.g. docker.io or 127.0.0.1:5000
	Path   string // repository path, e.g. library/busybox
	Tag    string // empty when only a digest is given
	Digest string // sha256:..., empty for a tag
}

// ParseReference parses ref the way Docker and the kubelet do (the
// distribution reference grammar, normalized): a first component with a
// dot or a colon, or "localhost", is a registry host; otherwise the image
// is on docker.io, under library/ when it has no namespace; no tag and no
// digest means :latest.
func ParseReference(ref string) (Reference, error) {
	if ref == "" {
		return Reference{}, fmt.Errorf("invalid reference format: repository name must have at least one component")
	}
	g := referenceGrammar()
	name, digest, hasDigest := strings.Cut(ref, "@")
	var r Reference
	if hasDigest {
		if !g.sha256.MatchString(digest) {
			return Reference{}, fmt.Errorf("invalid reference format %q: digest must be sha256: and 64 lower-case hex digits", ref)
		}
		r.Digest = digest
	}
	// The tag is after the last colon that is after the last slash; a
	// colon before it belongs to host:port.
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, r.Tag = name[:i], name[i+1:]
		if !g.tag.MatchString(r.Tag) {
			return Reference{}, fmt.Errorf("invalid reference format %q: bad tag %q", ref, r.Tag)
		}
	}
	r.Domain, r.Path = defaultDomain, name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || first != strings.ToLower(first) {
			r.Domain, r.Path = first, name[i+1:]
		}
	}
	if !g.domain.MatchString(r.Domain) {
		return Reference{}, fmt.Errorf("invalid reference format %q: bad registry host %q", ref, r.Domain)
	}
	if r.Domain == legacyDomain {
		r.Domain = defaultDomain
	}
	if r.Domain == defaultDomain && !strings.Contains(r.Path, "/") {
		r.Path = officialRepoPath + r.Path
	}
	if r.Path != strings.ToLower(r.Path) {
		return Reference{}, fmt.Errorf("invalid reference format: repository name (%s) must be lowercase", r.Path)
	}
	for _, c := range strings.Split(r.Path, "/") {
		if !g.pathComponent.MatchString(c) {
			return Reference{}, fmt.Errorf("invalid reference format %q: bad repository name component %q", ref, c)
		}
	}
	if len(r.Domain)+1+len(r.Path) > maxNameLength {
		return Reference{}, fmt.Errorf("invalid reference format %q: repository name must not be more than %d characters", ref, maxNameLength)
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// Name is the repository's full name, e.g. docker.io/library/busybox.
func (r Reference) Name() string { return r.Domain + "/" + r.Path }

// String is the full reference: name:tag, name@digest or name:tag@digest.
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// object is what the manifests endpoint is asked for: the digest when
// there is one (it pins the content), else the tag.
func (r Reference) object() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// storeName is the name the image is recorded under in the node's store,
// in the form the image store normalizes references to.
func (r Reference) storeName() string {
	if r.Digest != "" {
		return r.Name() + "@" + r.Digest
	}
	return r.Name() + ":" + r.Tag
}
