package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// maxDocumentSize bounds one YAML document, as the API server bounds a
// request body (3 MiB); a bigger one is almost certainly not a manifest.
const maxDocumentSize = 3 << 20

// document is one object of a manifest file.
type document struct {
	// index is the 1-based position of the YAML document in its file,
	// counting documents with any content (even only a comment) but not
	// empty ones between two "---" lines, as the YAML reader kubectl uses
	// does; item is the 1-based position in a kind: List, 0 otherwise.
	index, item int
	obj         *unstructured.Unstructured
}

// where names a document in messages: "document 2" or "document 2, item 3".
func (d document) where() string {
	if d.item > 0 {
		return fmt.Sprintf("document %d, item %d", d.index, d.item)
	}
	return fmt.Sprintf("document %d", d.index)
}

// docError is a problem with one document; the file's other documents are
// still applied.
type docError struct {
	where string
	err   error
}

func (e *docError) Error() string { return e.where + ": " + e.err.Error() }
func (e *docError) Unwrap() error { return e.err }

// parseManifest splits a file into objects: YAML documents separated by
// "---" lines (or one JSON object), empty documents skipped, kind: List
// expanded into its items as kubectl does. A document that does not parse
// or lacks apiVersion, kind or metadata.name is returned as a *docError
// beside the good ones; an error reading the stream itself stops parsing.
func parseManifest(data []byte) ([]document, []error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReaderSize(bytes.NewReader(data), 4096))
	var docs []document
	var errs []error
	for index := 1; ; index++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, &docError{where: fmt.Sprintf("document %d", index), err: err})
			break
		}
		if len(raw) > maxDocumentSize {
			errs = append(errs, &docError{where: fmt.Sprintf("document %d", index),
				err: fmt.Errorf("%d bytes is larger than the limit of %d", len(raw), maxDocumentSize)})
			continue
		}
		got, derrs := parseDocument(index, raw)
		docs = append(docs, got...)
		errs = append(errs, derrs...)
	}
	return docs, errs
}

func parseDocument(index int, raw []byte) ([]document, []error) {
	where := fmt.Sprintf("document %d", index)
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, []error{&docError{where: where, err: fmt.Errorf("not valid YAML: %w", err)}}
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || bytes.Equal(js, []byte("null")) {
		return nil, nil // only comments, or an empty document between separators
	}
	var content map[string]any
	if err := json.Unmarshal(js, &content); err != nil {
		return nil, []error{&docError{where: where, err: errors.New("want an object with apiVersion and kind")}}
	}
	obj := &unstructured.Unstructured{Object: content}
	if obj.GetKind() != "List" || !isListVersion(obj.GetAPIVersion()) {
		if err := checkObject(obj); err != nil {
			return nil, []error{&docError{where: where, err: err}}
		}
		return []document{{index: index, obj: obj}}, nil
	}
	items, ok := content["items"].([]any)
	if !ok && content["items"] != nil {
		return nil, []error{&docError{where: where, err: errors.New("items of a List must be a list")}}
	}
	var docs []document
	var errs []error
	for i, it := range items {
		d := document{index: index, item: i + 1}
		m, ok := it.(map[string]any)
		if !ok {
			errs = append(errs, &docError{where: d.where(), err: errors.New("want an object with apiVersion and kind")})
			continue
		}
		d.obj = &unstructured.Unstructured{Object: m}
		if err := checkObject(d.obj); err != nil {
			errs = append(errs, &docError{where: d.where(), err: err})
			continue
		}
		docs = append(docs, d)
	}
	return docs, errs
}

// isListVersion: kubectl expands the v1 List (and any group's List kind
// without a group, which it treats alike).
func isListVersion(apiVersion string) bool { return apiVersion == "v1" }

// checkObject rejects what server-side apply cannot take.
func checkObject(obj *unstructured.Unstructured) error {
	switch {
	case obj.GetAPIVersion() == "":
		return errors.New("apiVersion not set")
	case obj.GetKind() == "":
		return errors.New("kind not set")
	case obj.GetName() == "" && obj.GetGenerateName() != "":
		return fmt.Errorf("%s: metadata.name is required; apply cannot use generateName", obj.GetKind())
	case obj.GetName() == "":
		return fmt.Errorf("%s: metadata.name is required", obj.GetKind())
	}
	return nil
}
