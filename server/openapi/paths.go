package openapi

import (
	"reflect"
	"strings"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Patch content types, as Kubernetes lists them.
var patchTypes = []string{
	"application/apply-patch+yaml",
	"application/json-patch+json",
	"application/merge-patch+json",
	"application/strategic-merge-patch+json",
}

// queryParam describes a query parameter; kubectl looks for fieldValidation
// on the PATCH operation of a kind before it relies on server-side
// validation.
type queryParam struct{ name, typ, desc string }

var (
	paramDryRun = queryParam{"dryRun", "string",
		"When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"}
	paramFieldManager = queryParam{"fieldManager", "string",
		"fieldManager is a name associated with the actor or entity that is making these changes."}
	paramFieldValidation = queryParam{"fieldValidation", "string",
		"fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn (default) - Strict"}
	paramForce = queryParam{"force", "boolean",
		"Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."}
	paramLabelSelector = queryParam{"labelSelector", "string", "A selector to restrict the list of returned objects by their labels."}
	paramFieldSelector = queryParam{"fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."}
	paramLimit         = queryParam{"limit", "integer", "limit is a maximum number of responses to return for a list call."}
	paramContinue      = queryParam{"continue", "string", "The continue option should be set when retrieving more results from the server."}
	paramRV            = queryParam{"resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."}
	paramWatch         = queryParam{"watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."}
	paramGrace         = queryParam{"gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."}
	paramPropagation   = queryParam{"propagationPolicy", "string", "Whether and how garbage collection will be performed."}
)

// opSpec is one operation before rendering.
type opSpec struct {
	action   string // get, list, post, put, patch, delete, deletecollection
	verb     string // operationId prefix: read, list, create, replace, patch, delete, deletecollection
	desc     string
	params   []queryParam
	body     reflect.Type // request body type; nil for none
	bodyCTs  []string     // request content types when not JSON/YAML/protobuf
	response reflect.Type
	code     string
	gvk      schema.GroupVersionKind
}

// addPaths adds r's collection, item and subresource paths.
func addPaths(paths map[string]interface{}, g *generator, r Resource) {
	gvk := r.GroupVersion.WithKind(r.Kind)
	prefix := "/" + GroupVersionPath(r.GroupVersion)
	scope := ""
	if r.Namespaced {
		prefix += "/namespaces/{namespace}"
		scope = "Namespaced"
	}
	collection := prefix + "/" + r.Name
	item := collection + "/{name}"
	idName := operationGroup(r.GroupVersion) + scope + r.Kind
	status := reflect.TypeOf(metav1.Status{})
	deleteOptions := reflect.TypeOf(metav1.DeleteOptions{})
	patch := reflect.TypeOf(metav1.Patch{})
	writeParams := []queryParam{paramDryRun, paramFieldManager, paramFieldValidation}

	if r.List != nil {
		paths[collection] = g.path(r, false, idName, []opSpec{
			{action: "list", verb: "list", desc: "list or watch objects of kind " + r.Kind,
				params:   []queryParam{paramLabelSelector, paramFieldSelector, paramLimit, paramContinue, paramRV, paramWatch},
				response: r.List, code: "200", gvk: gvk},
			{action: "post", verb: "create", desc: "create a " + r.Kind, params: writeParams,
				body: r.Object, response: r.Object, code: "201", gvk: gvk},
			{action: "deletecollection", verb: "deletecollection", desc: "delete collection of " + r.Kind,
				params: []queryParam{paramDryRun, paramGrace, paramPropagation, paramLabelSelector, paramFieldSelector},
				body:   deleteOptions, response: status, code: "200", gvk: gvk},
		})
	}
	paths[item] = g.path(r, true, idName, []opSpec{
		{action: "get", verb: "read", desc: "read the specified " + r.Kind, response: r.Object, code: "200", gvk: gvk},
		{action: "put", verb: "replace", desc: "replace the specified " + r.Kind, params: writeParams,
			body: r.Object, response: r.Object, code: "200", gvk: gvk},
		{action: "patch", verb: "patch", desc: "partially update the specified " + r.Kind,
			params: append(writeParams, paramForce), body: patch, bodyCTs: patchTypes, response: r.Object, code: "200", gvk: gvk},
		{action: "delete", verb: "delete", desc: "delete a " + r.Kind,
			params: []queryParam{paramDryRun, paramGrace, paramPropagation}, body: deleteOptions, response: status, code: "200", gvk: gvk},
	})
	for _, sub := range r.Subresources {
		what := sub.Name + " of the specified " + r.Kind
		suffix := exportName(sub.Name)
		paths[item+"/"+sub.Name] = g.path(r, true, idName+suffix, []opSpec{
			{action: "get", verb: "read", desc: "read " + what, response: sub.Type, code: "200", gvk: sub.GVK},
			{action: "put", verb: "replace", desc: "replace " + what, params: writeParams,
				body: sub.Type, response: sub.Type, code: "200", gvk: sub.GVK},
			{action: "patch", verb: "patch", desc: "partially update " + what,
				params: append(writeParams, paramForce), body: patch, bodyCTs: patchTypes, response: sub.Type, code: "200", gvk: sub.GVK},
		})
	}
}

// operationGroup is the operationId infix Kubernetes uses: CoreV1, AppsV1,
// NetworkingV1 (the group's first label).
func operationGroup(gv schema.GroupVersion) string {
	group := "core"
	if gv.Group != "" {
		group, _, _ = strings.Cut(gv.Group, ".")
	}
	return exportName(group) + exportName(gv.Version)
}

func exportName(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

// path renders one path item with its operations.
func (g *generator) path(r Resource, named bool, idName string, ops []opSpec) map[string]interface{} {
	item := map[string]interface{}{}
	var params []interface{}
	if named {
		params = append(params, g.pathParam("name", "name of the "+r.Kind))
	}
	if r.Namespaced {
		params = append(params, g.pathParam("namespace", "object name and auth scope, such as for teams and projects"))
	}
	params = append(params, g.queryParam(queryParam{"pretty", "string", "If 'true', then the output is pretty printed."}))
	item["parameters"] = params
	for _, op := range ops {
		method := map[string]string{"get": "get", "list": "get", "post": "post", "put": "put",
			"patch": "patch", "delete": "delete", "deletecollection": "delete"}[op.action]
		item[method] = g.operation(op, idName, r.GroupVersion)
	}
	return item
}

func (g *generator) pathParam(name, desc string) map[string]interface{} {
	p := map[string]interface{}{"name": name, "in": "path", "required": true, "description": desc}
	if g.v3 {
		p["schema"] = map[string]interface{}{"type": "string", "uniqueItems": true}
	} else {
		p["type"] = "string"
		p["uniqueItems"] = true
	}
	return p
}

func (g *generator) queryParam(q queryParam) map[string]interface{} {
	p := map[string]interface{}{"name": q.name, "in": "query", "description": q.desc}
	if g.v3 {
		p["schema"] = map[string]interface{}{"type": q.typ, "uniqueItems": true}
	} else {
		p["type"] = q.typ
		p["uniqueItems"] = true
	}
	return p
}

func (g *generator) refTo(t reflect.Type) map[string]interface{} {
	return map[string]interface{}{"$ref": g.refPrefix + g.ref(t)}
}

var objectContentTypes = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}

// operation renders one operation in the document's dialect.
func (g *generator) operation(op opSpec, idName string, gv schema.GroupVersion) map[string]interface{} {
	group := "core"
	if gv.Group != "" {
		group = gv.Group
	}
	o := map[string]interface{}{
		"operationId":                     op.verb + idName,
		"description":                     op.desc,
		"tags":                            []string{group + "_" + gv.Version},
		"x-kubernetes-action":             op.action,
		"x-kubernetes-group-version-kind": map[string]string{"group": op.gvk.Group, "version": op.gvk.Version, "kind": op.gvk.Kind},
	}
	var params []interface{}
	for _, q := range op.params {
		params = append(params, g.queryParam(q))
	}
	responseCTs := objectContentTypes
	if op.action == "list" {
		responseCTs = append(responseCTs, "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
	}
	bodyCTs := op.bodyCTs
	if bodyCTs == nil {
		bodyCTs = objectContentTypes
	}
	if g.v3 {
		if op.body != nil {
			content := map[string]interface{}{}
			for _, ct := range bodyCTs {
				content[ct] = map[string]interface{}{"schema": g.refTo(op.body)}
			}
			o["requestBody"] = map[string]interface{}{"content": content, "required": op.action != "delete" && op.action != "deletecollection"}
		}
		content := map[string]interface{}{}
		for _, ct := range responseCTs {
			content[ct] = map[string]interface{}{"schema": g.refTo(op.response)}
		}
		o["responses"] = map[string]interface{}{
			op.code: map[string]interface{}{"description": "OK", "content": content},
			"401":   map[string]interface{}{"description": "Unauthorized"},
		}
	} else {
		if op.body != nil {
			params = append(params, map[string]interface{}{"name": "body", "in": "body",
				"required": op.action != "delete" && op.action != "deletecollection", "schema": g.refTo(op.body)})
			o["consumes"] = bodyCTs
		}
		o["produces"] = responseCTs
		o["schemes"] = []string{"https"}
		o["responses"] = map[string]interface{}{
			op.code: map[string]interface{}{"description": "OK", "schema": g.refTo(op.response)},
			"401":   map[string]interface{}{"description": "Unauthorized"},
		}
	}
	if len(params) > 0 {
		o["parameters"] = params
	}
	return o
}
