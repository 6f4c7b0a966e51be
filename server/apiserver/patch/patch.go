// Package patch applies PATCH bodies to typed objects and keeps their
// metadata.managedFields: JSON patch (RFC 6902), JSON merge patch
// (RFC 7386), strategic merge patch and server-side apply, with the
// errors and status codes the Kubernetes API server gives.
//
// Server-side apply and managed-field tracking use
// k8s.io/apimachinery/pkg/util/managedfields with a type converter built
// from the OpenAPI definitions of server/openapi (no client-go). The
// package does no I/O: reading and writing the store is the caller's.
package patch

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/mergepatch"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
)

// FieldValidation is the request's fieldValidation directive: what to do
// with unknown and duplicate fields.
type FieldValidation string

// The fieldValidation values.
const (
	Strict FieldValidation = "Strict"
	Warn   FieldValidation = "Warn"
	Ignore FieldValidation = "Ignore"
)

// Limits that keep a hostile patch from exhausting memory, as Kubernetes'.
const (
	maxJSONPatchOperations = 10000
	// maxCopyGrowth bounds how much "copy" operations may grow a document
	// (they can double it each time).
	maxCopyGrowth = 3 << 20
)

// Patch applies a JSON, merge or strategic merge patch to live and returns
// a new object of live's type. live is not modified. warnings are the
// unknown or duplicate fields found under Warn.
func (m *Manager) Patch(live runtime.Object, pt types.PatchType, patch []byte, fv FieldValidation) (runtime.Object, []string, error) {
	if fv == "" {
		fv = Warn
	}
	checkStrict := fv == Strict || fv == Warn
	original, gvk, err := m.encodeLive(live)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(err)
	}
	out := newLike(live)
	var strictErrs []error
	switch pt {
	case types.JSONPatchType:
		patched, errs, err := applyJSONPatch(original, patch, checkStrict)
		if err != nil {
			return nil, nil, err
		}
		strictErrs = errs
		strictErrs, err = decodePatched(patched, out, checkStrict, strictErrs)
		if err != nil {
			return nil, nil, err
		}
	case types.MergePatchType:
		if checkStrict {
			var v map[string]interface{}
			errs, err := kjson.UnmarshalStrict(patch, &v)
			if err != nil {
				return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: %v", err))
			}
			strictErrs = errs
		}
		patched, err := jsonpatch.MergePatch(original, patch)
		if err != nil {
			return nil, nil, apierrors.NewBadRequest(err.Error())
		}
		strictErrs, err = decodePatched(patched, out, checkStrict, strictErrs)
		if err != nil {
			return nil, nil, err
		}
	case types.StrategicMergePatchType:
		errs, err := strategicPatch(original, patch, out, checkStrict)
		if err != nil {
			return nil, nil, err
		}
		strictErrs = errs
	default:
		return nil, nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "",
			fmt.Sprintf("unsupported patch type %q", pt), 0, false)
	}
	if err := checkTypeMeta(gvk, out); err != nil {
		return nil, nil, err
	}
	var warnings []string
	if len(strictErrs) > 0 {
		if fv == Strict {
			return nil, nil, apierrors.NewBadRequest(runtime.NewStrictDecodingError(strictErrs).Error())
		}
		for _, e := range strictErrs {
			warnings = append(warnings, e.Error())
		}
	}
	return out, warnings, nil
}

// encodeLive is live's JSON with its apiVersion and kind, so patches that
// test or keep them see what clients see.
func (m *Manager) encodeLive(live runtime.Object) ([]byte, schema.GroupVersionKind, error) {
	obj := live.DeepCopyObject()
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Empty() && m.scheme != nil {
		if gvks, _, err := m.scheme.ObjectKinds(obj); err == nil && len(gvks) > 0 {
			gvk = gvks[0]
			obj.GetObjectKind().SetGroupVersionKind(gvk)
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, gvk, fmt.Errorf("encode %T for patching: %w", live, err)
	}
	return data, gvk, nil
}

// newLike returns an empty object of obj's Go type.
func newLike(obj runtime.Object) runtime.Object {
	return reflect.New(reflect.TypeOf(obj).Elem()).Interface().(runtime.Object)
}

// jsonPatchOp is one RFC 6902 operation, for strict decoding (its name
// shows in decoding errors).
type jsonPatchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	From  string          `json:"from"`
	Value json.RawMessage `json:"value"`
}

// applyJSONPatch applies an RFC 6902 patch to doc.
func applyJSONPatch(doc, patch []byte, checkStrict bool) ([]byte, []error, error) {
	var strictErrs []error
	if checkStrict {
		var ops []jsonPatchOp
		errs, err := kjson.UnmarshalStrict(patch, &ops)
		if err != nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: %v", err))
		}
		for _, e := range errs {
			strictErrs = append(strictErrs, fmt.Errorf("json patch %w", e))
		}
	}
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(err.Error())
	}
	if len(ops) > maxJSONPatchOperations {
		return nil, nil, apierrors.NewRequestEntityTooLargeError(
			fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(ops)))
	}
	copies := false
	for _, op := range ops {
		// Kubernetes turns off the library's negative array indices
		// (a package-level switch here, so check them ourselves).
		for _, key := range []string{"path", "from"} {
			if raw, ok := op[key]; ok && raw != nil {
				var p string
				if json.Unmarshal(*raw, &p) == nil && hasNegativeIndex(p) {
					return nil, nil, unprocessable(fmt.Sprintf("Unable to access invalid index: %s", p))
				}
			}
		}
		copies = copies || op.Kind() == "copy"
	}
	if !copies {
		patched, err := ops.Apply(doc)
		if err != nil {
			return nil, nil, unprocessable(err.Error())
		}
		return patched, strictErrs, nil
	}
	// Copies can grow a document exponentially: apply one operation at a
	// time and stop once it has grown too much.
	for _, op := range ops {
		if doc, err = (jsonpatch.Patch{op}).Apply(doc); err != nil {
			return nil, nil, unprocessable(err.Error())
		}
		if len(doc) > maxCopyGrowth+len(patch) {
			return nil, nil, apierrors.NewRequestEntityTooLargeError(
				fmt.Sprintf("the patched object is larger than %d bytes", maxCopyGrowth))
		}
	}
	return doc, strictErrs, nil
}

func hasNegativeIndex(pointer string) bool {
	for _, seg := range strings.Split(pointer, "/") {
		if strings.HasPrefix(seg, "-") && len(seg) > 1 {
			if _, err := strconv.Atoi(seg); err == nil {
				return true
			}
		}
	}
	return false
}

func unprocessable(msg string) error {
	return apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", msg, 0, false)
}

// decodePatched decodes a patched JSON document into out, adding the
// strict decoding errors to strictErrs when checkStrict.
func decodePatched(patched []byte, out runtime.Object, checkStrict bool, strictErrs []error) ([]error, error) {
	if !checkStrict {
		if err := kjson.UnmarshalCaseSensitivePreserveInts(patched, out); err != nil {
			return nil, invalidPatch(string(patched), err)
		}
		return nil, nil
	}
	errs, err := kjson.UnmarshalStrict(patched, out)
	if err != nil {
		return nil, invalidPatch(string(patched), err)
	}
	return append(strictErrs, errs...), nil
}

// invalidPatch is Kubernetes' answer to a patch whose result does not
// decode: 422 with the patched document as the invalid value.
func invalidPatch(value string, err error) error {
	// Echoing a huge document back helps nobody.
	const maxEcho = 4096
	if len(value) > maxEcho {
		value = value[:maxEcho] + "... (truncated)"
	}
	return apierrors.NewInvalid(schema.GroupKind{}, "", field.ErrorList{
		field.Invalid(field.NewPath("patch"), value, err.Error()),
	})
}

// strategicPatch applies a strategic merge patch, using out's Go type as
// the schema (patchStrategy/patchMergeKey struct tags).
func strategicPatch(original, patch []byte, out runtime.Object, checkStrict bool) ([]error, error) {
	var strictErrs []error
	patchMap := map[string]interface{}{}
	if checkStrict {
		errs, err := kjson.UnmarshalStrict(patch, &patchMap)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		strictErrs = errs
	} else if err := kjson.UnmarshalCaseSensitivePreserveInts(patch, &patchMap); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if patchMap == nil {
		// A JSON null patch changes nothing.
		patchMap = map[string]interface{}{}
	}
	originalMap := map[string]interface{}{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(original, &originalMap); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	schemaRef := newLike(out)
	patchedMap, err := strategicpatch.StrategicMergeMapPatch(originalMap, patchMap, schemaRef)
	if err != nil {
		return nil, strategicPatchError(err)
	}
	patched, err := json.Marshal(patchedMap)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return decodePatched(patched, out, checkStrict, strictErrs)
}

// strategicPatchError maps strategic merge errors to statuses as the
// Kubernetes API server does; other errors are the patch's fault too.
func strategicPatchError(err error) error {
	switch {
	case errors.Is(err, mergepatch.ErrNoListOfLists), errors.Is(err, mergepatch.ErrPatchContentNotMatchRetainKeys):
		return unprocessable(err.Error())
	}
	return apierrors.NewBadRequest(err.Error())
}

// checkTypeMeta refuses a patch that changed the object's apiVersion or
// kind, and clears them: the caller sets the served kind.
func checkTypeMeta(want schema.GroupVersionKind, out runtime.Object) error {
	got := out.GetObjectKind().GroupVersionKind()
	if !want.Empty() {
		if got.Version != "" && got.GroupVersion() != want.GroupVersion() {
			return apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)",
				got.GroupVersion(), want.GroupVersion()))
		}
		if got.Kind != "" && got.Kind != want.Kind {
			return apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", got.Kind, want.Kind))
		}
	}
	out.GetObjectKind().SetGroupVersionKind(want)
	return nil
}
