package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strings"
	"sync"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/orch-dev/orch/server/registry"
)

// Verbs of a main resource: the generic handler serves all of them.
var resourceVerbs = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// verbsOf is what discovery (both forms) says a resource supports: stored
// kinds all verbs, create-only ones (reviews, TokenRequest-like) create.
func verbsOf(res *registry.Resource) metav1.Verbs {
	if res.Ephemeral != nil {
		return metav1.Verbs{"create"}
	}
	return resourceVerbs
}

// subresourceInfo is what discovery says about a subresource.
type subresourceInfo struct {
	gvk   schema.GroupVersionKind // zero: the parent's kind
	verbs metav1.Verbs
}

// subresourceInfos follow the Kubernetes API server's discovery.
var subresourceInfos = map[string]subresourceInfo{
	"status":              {verbs: metav1.Verbs{"get", "patch", "update"}},
	"scale":               {gvk: schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}, verbs: metav1.Verbs{"get", "patch", "update"}},
	"binding":             {gvk: schema.GroupVersionKind{Version: "v1", Kind: "Binding"}, verbs: metav1.Verbs{"create"}},
	"eviction":            {gvk: schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, verbs: metav1.Verbs{"create"}},
	"log":                 {verbs: metav1.Verbs{"get"}},
	"exec":                {gvk: schema.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"}, verbs: metav1.Verbs{"create", "get"}},
	"attach":              {gvk: schema.GroupVersionKind{Version: "v1", Kind: "PodAttachOptions"}, verbs: metav1.Verbs{"create", "get"}},
	"portforward":         {gvk: schema.GroupVersionKind{Version: "v1", Kind: "PodPortForwardOptions"}, verbs: metav1.Verbs{"create", "get"}},
	"ephemeralcontainers": {verbs: metav1.Verbs{"get", "patch", "update"}},
	"resize":              {verbs: metav1.Verbs{"get", "patch", "update"}},
	"finalize":            {verbs: metav1.Verbs{"update"}},
	"proxy":               {verbs: metav1.Verbs{"create", "delete", "get", "patch", "update"}},
	"token":               {gvk: schema.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}, verbs: metav1.Verbs{"create"}},
}

func subresourceOf(res *registry.Resource, name string) subresourceInfo {
	info, ok := subresourceInfos[name]
	if !ok {
		info = subresourceInfo{verbs: metav1.Verbs{"get"}}
	}
	if info.gvk.Kind == "" {
		info.gvk = res.GroupVersionKind()
	}
	return info
}

// discovery holds the discovery documents of a table. The table never
// changes, so they are built once, on first use.
type discovery struct {
	once     sync.Once
	table    *registry.Table
	computed *[]ComputedResource // read when the documents are built

	groups    []metav1.APIGroup                  // named groups, registration order
	resources map[string]*metav1.APIResourceList // by group version string
	// Aggregated (apidiscovery.k8s.io/v2) documents of /api and /apis,
	// JSON without apiVersion (set per negotiated version), with ETags.
	aggregated map[string]aggregatedDoc
}

type aggregatedDoc struct {
	list apidiscoveryv2.APIGroupDiscoveryList
	etag string
}

// preferredFirst sorts versions the way Kubernetes prefers them (v2 before
// v1 before v1beta1).
func preferredFirst(versions []string) {
	sort.SliceStable(versions, func(i, j int) bool {
		return version.CompareKubeAwareVersionStrings(versions[i], versions[j]) > 0
	})
}

func (d *discovery) build() {
	d.resources = map[string]*metav1.APIResourceList{}
	versionsOf := map[string][]string{}
	var groupOrder []string
	listFor := func(groupVersion schema.GroupVersion) *metav1.APIResourceList {
		gv := groupVersion.String()
		list := d.resources[gv]
		if list == nil {
			list = &metav1.APIResourceList{GroupVersion: gv, APIResources: []metav1.APIResource{}}
			d.resources[gv] = list
			g := groupVersion.Group
			if _, seen := versionsOf[g]; !seen {
				groupOrder = append(groupOrder, g)
			}
			versionsOf[g] = append(versionsOf[g], groupVersion.Version)
		}
		return list
	}
	for _, res := range d.table.Resources() {
		list := listFor(res.GroupVersion)
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: res.Name, SingularName: res.SingularName, Namespaced: res.Namespaced,
			Kind: res.Kind, Verbs: verbsOf(res), ShortNames: res.ShortNames, Categories: res.Categories,
		})
		for _, sub := range res.Subresources {
			info := subresourceOf(res, sub)
			ar := metav1.APIResource{Name: res.Name + "/" + sub, Namespaced: res.Namespaced, Kind: info.gvk.Kind, Verbs: info.verbs}
			if info.gvk.GroupVersion() != res.GroupVersion {
				ar.Group, ar.Version = info.gvk.Group, info.gvk.Version
			}
			list.APIResources = append(list.APIResources, ar)
		}
	}
	for _, c := range *d.computed {
		list := listFor(c.GroupVersion)
		ar, _ := computedDiscovery(c)
		list.APIResources = append(list.APIResources, ar)
	}
	d.aggregated = map[string]aggregatedDoc{}
	var legacy, named apidiscoveryv2.APIGroupDiscoveryList
	for _, g := range groupOrder {
		versions := versionsOf[g]
		preferredFirst(versions)
		group := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: g}}
		apiGroup := metav1.APIGroup{Name: g}
		for _, v := range versions {
			gv := schema.GroupVersion{Group: g, Version: v}
			apiGroup.Versions = append(apiGroup.Versions, metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: v})
			group.Versions = append(group.Versions, d.versionDiscovery(gv))
		}
		apiGroup.PreferredVersion = apiGroup.Versions[0]
		if g == "" {
			legacy.Items = append(legacy.Items, group)
			continue
		}
		d.groups = append(d.groups, apiGroup)
		named.Items = append(named.Items, group)
	}
	for path, list := range map[string]apidiscoveryv2.APIGroupDiscoveryList{"/api": legacy, "/apis": named} {
		if list.Items == nil {
			list.Items = []apidiscoveryv2.APIGroupDiscovery{}
		}
		data, _ := json.Marshal(list)
		sum := sha256.Sum256(data)
		d.aggregated[path] = aggregatedDoc{list: list, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	}
}

// versionDiscovery is one group version in aggregated discovery form.
func (d *discovery) versionDiscovery(gv schema.GroupVersion) apidiscoveryv2.APIVersionDiscovery {
	out := apidiscoveryv2.APIVersionDiscovery{Version: gv.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
	for _, res := range d.table.Resources() {
		if res.GroupVersion != gv {
			continue
		}
		scope := apidiscoveryv2.ScopeCluster
		if res.Namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		kind := metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: res.Kind}
		rd := apidiscoveryv2.APIResourceDiscovery{
			Resource: res.Name, ResponseKind: &kind, Scope: scope, SingularResource: res.SingularName,
			Verbs: verbsOf(res), ShortNames: res.ShortNames, Categories: res.Categories,
		}
		for _, sub := range res.Subresources {
			info := subresourceOf(res, sub)
			k := metav1.GroupVersionKind(info.gvk)
			rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{
				Subresource: sub, ResponseKind: &k, Verbs: info.verbs,
			})
		}
		out.Resources = append(out.Resources, rd)
	}
	for _, c := range *d.computed {
		if c.GroupVersion == gv {
			_, rd := computedDiscovery(c)
			out.Resources = append(out.Resources, rd)
		}
	}
	return out
}

// Aggregated discovery media types, newest first.
var aggregatedVersions = []string{"v2", "v2beta1"}

// wantsAggregated returns the apidiscovery.k8s.io version the Accept header
// asks for first, or "" for the classic documents.
func wantsAggregated(r *http.Request) string {
	for _, clause := range strings.Split(r.Header.Get("Accept"), ",") {
		typ, params, err := mime.ParseMediaType(strings.TrimSpace(clause))
		if err != nil {
			continue
		}
		if typ == mediaJSON && params["g"] == "apidiscovery.k8s.io" && params["as"] == "APIGroupDiscoveryList" {
			for _, v := range aggregatedVersions {
				if params["v"] == v {
					return v
				}
			}
			continue
		}
		if params["g"] == "" && (typ == mediaJSON || typ == mediaYAML || typ == mediaProtobuf || typ == "*/*" || typ == "application/*") {
			// The client prefers a classic document.
			return ""
		}
	}
	return ""
}

func (s *Server) serveAggregated(w http.ResponseWriter, r *http.Request, d *discovery, path, v string) {
	doc := d.aggregated[path]
	ct := "application/json;g=apidiscovery.k8s.io;v=" + v + ";as=APIGroupDiscoveryList"
	w.Header().Set("Vary", "Accept")
	w.Header().Set("ETag", doc.etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == doc.etag {
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	list := doc.list
	list.APIVersion = "apidiscovery.k8s.io/" + v
	list.Kind = "APIGroupDiscoveryList"
	data, err := json.Marshal(list)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encode discovery: %w", err))
		return
	}
	writeRaw(w, http.StatusOK, ct, data)
}

// mountDiscovery serves /api, /api/v1, /apis, /apis/G and /apis/G/V.
func (s *Server) mountDiscovery() {
	d := &discovery{table: s.table, computed: &s.computed}
	docs := func() *discovery { d.once.Do(d.build); return d }

	s.mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		d := docs()
		if v := wantsAggregated(r); v != "" {
			s.serveAggregated(w, r, d, "/api", v)
			return
		}
		w.Header().Set("Vary", "Accept")
		s.codecs.writeObject(w, r, http.StatusOK, &metav1.APIVersions{
			Versions:                   []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}},
		})
	})
	s.mux.HandleFunc("/apis", func(w http.ResponseWriter, r *http.Request) {
		d := docs()
		if v := wantsAggregated(r); v != "" {
			s.serveAggregated(w, r, d, "/apis", v)
			return
		}
		w.Header().Set("Vary", "Accept")
		groups := append([]metav1.APIGroup{}, d.groups...)
		s.codecs.writeObject(w, r, http.StatusOK, &metav1.APIGroupList{Groups: groups})
	})
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		gv := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/"), "/")
		s.serveResourceList(w, r, docs(), gv, !strings.Contains(gv, "/"))
	})
	s.mux.HandleFunc("/apis/", func(w http.ResponseWriter, r *http.Request) {
		d := docs()
		rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/apis/"), "/")
		parts := strings.Split(rest, "/")
		switch len(parts) {
		case 1:
			for i := range d.groups {
				if d.groups[i].Name == parts[0] {
					g := d.groups[i]
					s.codecs.writeObject(w, r, http.StatusOK, &g)
					return
				}
			}
		case 2:
			s.serveResourceList(w, r, d, rest, parts[0] != "")
			return
		}
		s.writeError(w, r, errNotFoundGeneric)
	})
}

func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request, d *discovery, gv string, ok bool) {
	list := d.resources[gv]
	if !ok || list == nil || gv == "" {
		s.writeError(w, r, errNotFoundGeneric)
		return
	}
	out := *list
	s.codecs.writeObject(w, r, http.StatusOK, &out)
}
