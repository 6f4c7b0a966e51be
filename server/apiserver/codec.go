package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Media types the server speaks.
const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

// mediaType is one acceptable response encoding.
type mediaType struct {
	Type string // mediaJSON, mediaYAML or mediaProtobuf
	// As is "", "Table", "PartialObjectMetadata" or
	// "PartialObjectMetadataList" (a meta.k8s.io transformation).
	As string
}

// codecs encodes and decodes objects of the scheme.
type codecs struct {
	scheme   *runtime.Scheme
	proto    *protobuf.Serializer
	protoRaw *protobuf.RawSerializer
}

func newCodecs(scheme *runtime.Scheme) *codecs {
	return &codecs{
		scheme:   scheme,
		proto:    protobuf.NewSerializer(scheme, scheme),
		protoRaw: protobuf.NewRawSerializer(scheme, scheme),
	}
}

// negotiate picks the response encoding from the Accept header, honouring
// Kubernetes' meta.k8s.io transformations (as=Table, as=PartialObjectMetadata).
func negotiate(r *http.Request) (mediaType, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return mediaType{Type: mediaJSON}, nil
	}
	for _, clause := range strings.Split(accept, ",") {
		typ, params, err := mime.ParseMediaType(strings.TrimSpace(clause))
		if err != nil {
			continue
		}
		var mt mediaType
		switch typ {
		case mediaJSON, "*/*", "application/*":
			mt.Type = mediaJSON
		case mediaYAML:
			mt.Type = mediaYAML
		case mediaProtobuf:
			mt.Type = mediaProtobuf
		default:
			continue
		}
		if as := params["as"]; as != "" {
			if params["g"] != "meta.k8s.io" || (params["v"] != "v1" && params["v"] != "v1beta1") {
				continue
			}
			switch as {
			case "Table", "PartialObjectMetadata", "PartialObjectMetadataList":
				mt.As = as
			default:
				continue
			}
			if mt.As == "Table" && mt.Type == mediaProtobuf {
				continue
			}
		}
		return mt, nil
	}
	return mediaType{}, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "",
		fmt.Sprintf("only the following media types are accepted: %s, %s, %s", mediaJSON, mediaYAML, mediaProtobuf), 0, false)
}

// contentTypeOf returns the Content-Type header for a response.
func (m mediaType) contentType() string {
	switch m.Type {
	case mediaProtobuf:
		return mediaProtobuf
	case mediaYAML:
		return mediaYAML
	}
	if m.As != "" {
		return "application/json;as=" + m.As + ";g=meta.k8s.io;v=v1"
	}
	return mediaJSON
}

// encode serialises obj (whose GVK is set) in the given type.
func (c *codecs) encode(typ string, obj runtime.Object) ([]byte, error) {
	switch typ {
	case mediaProtobuf:
		var buf bytes.Buffer
		if err := c.proto.Encode(obj, &buf); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case mediaYAML:
		data, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		return yaml.JSONToYAML(data)
	}
	return json.Marshal(obj)
}

// writeObject writes obj with the negotiated encoding, ignoring any
// meta.k8s.io transformation (used for Status and other fixed kinds).
func (c *codecs) writeObject(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	mt, err := negotiate(r)
	if err != nil || mt.As != "" {
		mt = mediaType{Type: mediaJSON}
	}
	if gvk := obj.GetObjectKind().GroupVersionKind(); gvk.Kind == "" {
		if gvks, _, err := c.scheme.ObjectKinds(obj); err == nil && len(gvks) > 0 {
			obj.GetObjectKind().SetGroupVersionKind(gvks[0])
		}
	}
	data, err := c.encode(mt.Type, obj)
	if err != nil {
		mt = mediaType{Type: mediaJSON}
		data, _ = json.Marshal(toStatus(apierrors.NewInternalError(err)))
		code = http.StatusInternalServerError
	}
	writeRaw(w, code, mt.contentType(), data)
}

func writeRaw(w http.ResponseWriter, code int, contentType string, data []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// fieldValidation is the request's fieldValidation directive.
type fieldValidation string

const (
	validationStrict fieldValidation = "Strict"
	validationWarn   fieldValidation = "Warn"
	validationIgnore fieldValidation = "Ignore"
)

func parseFieldValidation(r *http.Request) (fieldValidation, error) {
	switch v := r.URL.Query().Get("fieldValidation"); v {
	case "":
		return validationWarn, nil
	case "Strict", "Warn", "Ignore":
		return fieldValidation(v), nil
	default:
		return "", apierrors.NewBadRequest(fmt.Sprintf("fieldValidation parameter unsupported: %q (valid values: Ignore, Warn, Strict)", v))
	}
}

// decodeBody decodes a request body into into (a typed object of kind gvk).
// Unknown and duplicate fields are errors under Strict and warnings under
// Warn. The body's apiVersion/kind, when present, must be gvk's.
func (c *codecs) decodeBody(r *http.Request, body []byte, gvk schema.GroupVersionKind, into runtime.Object, fv fieldValidation) (warnings []string, err error) {
	ct := r.Header.Get("Content-Type")
	typ := mediaJSON
	if ct != "" {
		t, _, perr := mime.ParseMediaType(ct)
		if perr != nil {
			return nil, unsupportedMediaType(ct)
		}
		typ = t
	}
	cannot := func(err error) error {
		return apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v",
			gvk.Kind, gvk.Version, gvk.Kind, err))
	}
	switch typ {
	case mediaProtobuf:
		obj, got, err := c.proto.Decode(body, &gvk, into)
		if err != nil {
			return nil, cannot(err)
		}
		if err := checkKind(*got, gvk); err != nil {
			return nil, err
		}
		if obj != into {
			return nil, cannot(fmt.Errorf("unexpected object type %T", obj))
		}
		return nil, nil
	case mediaYAML, "application/x-yaml", "text/yaml":
		js, err := yaml.YAMLToJSONStrict(body)
		if err != nil {
			if fv == validationStrict {
				return nil, cannot(fmt.Errorf("strict decoding error: %w", err))
			}
			if js, err = yaml.YAMLToJSON(body); err != nil {
				return nil, cannot(err)
			}
		}
		body = js
	case mediaJSON:
	default:
		return nil, unsupportedMediaType(ct)
	}
	return c.decodeJSON(body, gvk, into, fv)
}

// decodeJSON decodes JSON into a typed object; see decodeBody.
func (c *codecs) decodeJSON(body []byte, gvk schema.GroupVersionKind, into runtime.Object, fv fieldValidation) ([]string, error) {
	cannot := func(err error) error {
		return apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v",
			gvk.Kind, gvk.Version, gvk.Kind, err))
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(body, &tm); err != nil {
		return nil, cannot(err)
	}
	got := gvk
	if tm.APIVersion != "" || tm.Kind != "" {
		gv, err := schema.ParseGroupVersion(tm.APIVersion)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		got = gv.WithKind(tm.Kind)
		if tm.Kind == "" {
			got.Kind = gvk.Kind
		}
		if tm.APIVersion == "" {
			got.Group, got.Version = gvk.Group, gvk.Version
		}
		if err := checkKind(got, gvk); err != nil {
			return nil, err
		}
	}
	// The kind was checked above, so the body decodes into into: straight
	// to the strict unmarshal the JSON serializer would end in, without its
	// second pass over the body to find the kind again.
	strictErrs, err := sigsjson.UnmarshalStrict(body, into)
	if err == nil && len(strictErrs) > 0 {
		err = runtime.NewStrictDecodingError(strictErrs)
	}
	var warnings []string
	if err != nil {
		if !runtime.IsStrictDecodingError(err) {
			return nil, cannot(err)
		}
		switch fv {
		case validationStrict:
			return nil, cannot(err)
		case validationWarn:
			if se, ok := runtime.AsStrictDecodingError(err); ok {
				for _, e := range se.Errors() {
					warnings = append(warnings, e.Error())
				}
			}
		}
	}
	into.GetObjectKind().SetGroupVersionKind(gvk)
	return warnings, nil
}

func checkKind(got, want schema.GroupVersionKind) error {
	if got.GroupVersion() != want.GroupVersion() {
		return apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)",
			got.GroupVersion().String(), want.GroupVersion().String()))
	}
	if got.Kind != want.Kind {
		return apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", got.Kind, want.Kind))
	}
	return nil
}

// unsupportedMediaType is Kubernetes' 415 answer.
func unsupportedMediaType(ct string) error {
	return apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "",
		fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s", mediaJSON, mediaYAML, mediaProtobuf), 0, false)
}
