package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// The Swagger 2.0 document in protobuf is gnostic's openapi_v2.Document
// (github.com/google/gnostic-models/openapiv2/OpenAPIv2.proto), which is
// what client-go's OpenAPISchema and kubectl's client-side validation
// decode. It is written here straight from the JSON document with
// protowire instead of through gnostic's YAML compiler: converting with
// gnostic linked its whole generated parser (about 0.8 MB of binary) for
// one endpoint. The encoder knows exactly the Swagger fields this package
// emits and fails on any other, so a generator change cannot silently
// drop a field from the protobuf form (TestV2ProtoMatchesGnostic compares
// the two encodings on every served kind).
//
// Vendor extensions and other free-form values are gnostic Any messages
// whose yaml field holds the value as text; it holds the value's JSON,
// which is YAML too (kube-openapi reads it with yaml.Unmarshal).

// member is one member of a JSON object, in document order (gnostic keeps
// that order for repeated named entries).
type member struct {
	name  string
	value json.RawMessage
}

// objectMembers splits a JSON object into its members.
func objectMembers(raw json.RawMessage) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("want a JSON object, got %.40q", raw)
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, member{name: name, value: value})
	}
	return out, nil
}

// arrayElements splits a JSON array into its elements.
func arrayElements(raw json.RawMessage) ([]json.RawMessage, error) {
	var out []json.RawMessage
	if err := json.Unmarshal(raw, &out); err != nil || out == nil {
		return nil, fmt.Errorf("want a JSON array, got %.40q", raw)
	}
	return out, nil
}

// encodeFunc encodes one JSON value as a protobuf message's bytes.
type encodeFunc func(json.RawMessage) ([]byte, error)

// fieldKind says how a JSON member becomes a protobuf field.
type fieldKind int

const (
	kindString    fieldKind = iota // string
	kindBool                       // bool
	kindDouble                     // double
	kindInt64                      // int64
	kindStrings                    // repeated string from a JSON array
	kindAny                        // Any holding the value's text
	kindAnys                       // repeated Any from a JSON array
	kindMessage                    // a message, encoded by field.encode
	kindMessages                   // repeated message from a JSON array
	kindOneOrMore                  // repeated message from one JSON value or an array (Schema.items)
)

// field is where one JSON member goes.
type field struct {
	num    protowire.Number
	kind   fieldKind
	encode encodeFunc // for the message kinds
}

// messageSpec is one gnostic message with named fields.
type messageSpec struct {
	name       string
	fields     map[string]field
	extensions protowire.Number // field of "x-" members as NamedAny; 0 for none
}

// encode writes the JSON object raw as the message's fields.
func (m *messageSpec) encode(raw json.RawMessage) ([]byte, error) {
	members, err := objectMembers(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.name, err)
	}
	var out []byte
	for _, mem := range members {
		if m.extensions != 0 && strings.HasPrefix(mem.name, "x-") {
			out = appendMessage(out, m.extensions, encodeNamedAny(mem.name, mem.value))
			continue
		}
		f, ok := m.fields[mem.name]
		if !ok {
			return nil, fmt.Errorf("%s: field %q has no protobuf encoding", m.name, mem.name)
		}
		if out, err = f.append(out, mem.value); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", m.name, mem.name, err)
		}
	}
	return out, nil
}

// append adds value as the field to out. Zero scalars are left out, as
// proto3 does.
func (f field) append(out []byte, value json.RawMessage) ([]byte, error) {
	switch f.kind {
	case kindString:
		var s string
		if err := json.Unmarshal(value, &s); err != nil {
			return nil, err
		}
		if s != "" {
			out = protowire.AppendTag(out, f.num, protowire.BytesType)
			out = protowire.AppendString(out, s)
		}
	case kindBool:
		var b bool
		if err := json.Unmarshal(value, &b); err != nil {
			return nil, err
		}
		if b {
			out = protowire.AppendTag(out, f.num, protowire.VarintType)
			out = protowire.AppendVarint(out, protowire.EncodeBool(b))
		}
	case kindDouble:
		var d float64
		if err := json.Unmarshal(value, &d); err != nil {
			return nil, err
		}
		if d != 0 {
			out = protowire.AppendTag(out, f.num, protowire.Fixed64Type)
			out = protowire.AppendFixed64(out, math.Float64bits(d))
		}
	case kindInt64:
		var n int64
		if err := json.Unmarshal(value, &n); err != nil {
			return nil, err
		}
		if n != 0 {
			out = protowire.AppendTag(out, f.num, protowire.VarintType)
			out = protowire.AppendVarint(out, uint64(n))
		}
	case kindStrings:
		var ss []string
		if err := json.Unmarshal(value, &ss); err != nil {
			return nil, err
		}
		for _, s := range ss {
			out = protowire.AppendTag(out, f.num, protowire.BytesType)
			out = protowire.AppendString(out, s)
		}
	case kindAny:
		out = appendMessage(out, f.num, encodeAny(value))
	case kindAnys:
		elems, err := arrayElements(value)
		if err != nil {
			return nil, err
		}
		for _, e := range elems {
			out = appendMessage(out, f.num, encodeAny(e))
		}
	case kindMessage:
		msg, err := f.encode(value)
		if err != nil {
			return nil, err
		}
		out = appendMessage(out, f.num, msg)
	case kindMessages, kindOneOrMore:
		elems := []json.RawMessage{value}
		if f.kind == kindMessages || bytes.HasPrefix(bytes.TrimSpace(value), []byte("[")) {
			var err error
			if elems, err = arrayElements(value); err != nil {
				return nil, err
			}
		}
		for _, e := range elems {
			msg, err := f.encode(e)
			if err != nil {
				return nil, err
			}
			out = appendMessage(out, f.num, msg)
		}
	}
	return out, nil
}

func appendMessage(out []byte, num protowire.Number, msg []byte) []byte {
	out = protowire.AppendTag(out, num, protowire.BytesType)
	return protowire.AppendBytes(out, msg)
}

// encodeAny is gnostic's Any{yaml: text}.
func encodeAny(value json.RawMessage) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), string(value))
}

// encodeNamedAny is gnostic's NamedAny{name, value: Any}.
func encodeNamedAny(name string, value json.RawMessage) []byte {
	out := protowire.AppendTag(nil, 1, protowire.BytesType)
	out = protowire.AppendString(out, name)
	return appendMessage(out, 2, encodeAny(value))
}

// encodeNamed encodes a JSON object whose members are named entries
// (paths, definitions, properties, responses): each member becomes a
// Named* message {name = 1, value = 2} in field num; "x-" members go to
// field extensions when it is not 0.
func encodeNamed(what string, num, extensions protowire.Number, value encodeFunc) encodeFunc {
	return func(raw json.RawMessage) ([]byte, error) {
		members, err := objectMembers(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		var out []byte
		for _, mem := range members {
			if extensions != 0 && strings.HasPrefix(mem.name, "x-") {
				out = appendMessage(out, extensions, encodeNamedAny(mem.name, mem.value))
				continue
			}
			v, err := value(mem.value)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", what, mem.name, err)
			}
			named := protowire.AppendTag(nil, 1, protowire.BytesType)
			named = protowire.AppendString(named, mem.name)
			out = appendMessage(out, num, appendMessage(named, 2, v))
		}
		return out, nil
	}
}

// wrap encodes a oneof wrapper message: the value as its field num.
func wrap(num protowire.Number, inner encodeFunc) encodeFunc {
	return func(raw json.RawMessage) ([]byte, error) {
		msg, err := inner(raw)
		if err != nil {
			return nil, err
		}
		return appendMessage(nil, num, msg), nil
	}
}

// v2Encoder holds the message specs; Schema refers to itself, so they are
// built together.
type v2Encoder struct {
	schema, document messageSpec
}

func newV2Encoder() *v2Encoder {
	e := &v2Encoder{}
	schema := e.schema.encode
	e.schema = messageSpec{name: "Schema", extensions: 31, fields: map[string]field{
		"$ref":                 {num: 1, kind: kindString},
		"format":               {num: 2, kind: kindString},
		"title":                {num: 3, kind: kindString},
		"description":          {num: 4, kind: kindString},
		"default":              {num: 5, kind: kindAny},
		"multipleOf":           {num: 6, kind: kindDouble},
		"maximum":              {num: 7, kind: kindDouble},
		"exclusiveMaximum":     {num: 8, kind: kindBool},
		"minimum":              {num: 9, kind: kindDouble},
		"exclusiveMinimum":     {num: 10, kind: kindBool},
		"maxLength":            {num: 11, kind: kindInt64},
		"minLength":            {num: 12, kind: kindInt64},
		"pattern":              {num: 13, kind: kindString},
		"maxItems":             {num: 14, kind: kindInt64},
		"minItems":             {num: 15, kind: kindInt64},
		"uniqueItems":          {num: 16, kind: kindBool},
		"maxProperties":        {num: 17, kind: kindInt64},
		"minProperties":        {num: 18, kind: kindInt64},
		"required":             {num: 19, kind: kindStrings},
		"enum":                 {num: 20, kind: kindAnys},
		"additionalProperties": {num: 21, kind: kindMessage, encode: additionalProperties(schema)},
		"type":                 {num: 22, kind: kindMessage, encode: typeItem},
		"items":                {num: 23, kind: kindMessage, encode: itemsItem(schema)},
		"allOf":                {num: 24, kind: kindMessages, encode: schema},
		"properties":           {num: 25, kind: kindMessage, encode: encodeNamed("properties", 1, 0, schema)},
		"discriminator":        {num: 26, kind: kindString},
		"readOnly":             {num: 27, kind: kindBool},
		"example":              {num: 30, kind: kindAny},
	}}

	// Parameters: a body parameter or one of the non-body kinds, by "in".
	body := messageSpec{name: "BodyParameter", extensions: 6, fields: map[string]field{
		"description": {num: 1, kind: kindString},
		"name":        {num: 2, kind: kindString},
		"in":          {num: 3, kind: kindString},
		"required":    {num: 4, kind: kindBool},
		"schema":      {num: 5, kind: kindMessage, encode: schema},
	}}
	query := nonBodyParameter("QueryParameterSubSchema", true)
	path := nonBodyParameter("PathParameterSubSchema", false)
	parameter := func(raw json.RawMessage) ([]byte, error) {
		var p struct {
			In string `json:"in"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, err
		}
		// ParametersItem{parameter = 1: Parameter{body = 1 | non_body = 2:
		// NonBodyParameter{query = 3 | path = 4}}}.
		var msg []byte
		var err error
		switch p.In {
		case "body":
			msg, err = wrap(1, body.encode)(raw)
		case "query":
			msg, err = wrap(2, wrap(3, query.encode))(raw)
		case "path":
			msg, err = wrap(2, wrap(4, path.encode))(raw)
		default:
			return nil, fmt.Errorf("parameter in %q has no protobuf encoding", p.In)
		}
		if err != nil {
			return nil, err
		}
		return appendMessage(nil, 1, msg), nil
	}

	// Responses: {code: Response}, each a NamedResponseValue whose value
	// is ResponseValue{response = 1}.
	response := messageSpec{name: "Response", extensions: 5, fields: map[string]field{
		"description": {num: 1, kind: kindString},
		"schema":      {num: 2, kind: kindMessage, encode: wrap(1, schema)},
	}}
	responses := encodeNamed("responses", 1, 2, wrap(1, response.encode))

	operation := messageSpec{name: "Operation", extensions: 13, fields: map[string]field{
		"tags":        {num: 1, kind: kindStrings},
		"summary":     {num: 2, kind: kindString},
		"description": {num: 3, kind: kindString},
		"operationId": {num: 5, kind: kindString},
		"produces":    {num: 6, kind: kindStrings},
		"consumes":    {num: 7, kind: kindStrings},
		"parameters":  {num: 8, kind: kindMessages, encode: parameter},
		"responses":   {num: 9, kind: kindMessage, encode: responses},
		"schemes":     {num: 10, kind: kindStrings},
		"deprecated":  {num: 11, kind: kindBool},
	}}
	pathItem := messageSpec{name: "PathItem", extensions: 10, fields: map[string]field{
		"$ref":       {num: 1, kind: kindString},
		"get":        {num: 2, kind: kindMessage, encode: operation.encode},
		"put":        {num: 3, kind: kindMessage, encode: operation.encode},
		"post":       {num: 4, kind: kindMessage, encode: operation.encode},
		"delete":     {num: 5, kind: kindMessage, encode: operation.encode},
		"options":    {num: 6, kind: kindMessage, encode: operation.encode},
		"head":       {num: 7, kind: kindMessage, encode: operation.encode},
		"patch":      {num: 8, kind: kindMessage, encode: operation.encode},
		"parameters": {num: 9, kind: kindMessages, encode: parameter},
	}}
	info := messageSpec{name: "Info", extensions: 7, fields: map[string]field{
		"title":          {num: 1, kind: kindString},
		"version":        {num: 2, kind: kindString},
		"description":    {num: 3, kind: kindString},
		"termsOfService": {num: 4, kind: kindString},
	}}
	e.document = messageSpec{name: "Document", extensions: 16, fields: map[string]field{
		"swagger":     {num: 1, kind: kindString},
		"info":        {num: 2, kind: kindMessage, encode: info.encode},
		"host":        {num: 3, kind: kindString},
		"basePath":    {num: 4, kind: kindString},
		"schemes":     {num: 5, kind: kindStrings},
		"consumes":    {num: 6, kind: kindStrings},
		"produces":    {num: 7, kind: kindStrings},
		"paths":       {num: 8, kind: kindMessage, encode: encodeNamed("paths", 2, 1, pathItem.encode)},
		"definitions": {num: 9, kind: kindMessage, encode: encodeNamed("definitions", 1, 0, schema)},
	}}
	return e
}

// nonBodyParameter is QueryParameterSubSchema or PathParameterSubSchema:
// the path form has no allowEmptyValue and numbers every later field one
// lower.
func nonBodyParameter(name string, query bool) messageSpec {
	var shift protowire.Number
	if !query {
		shift = 1
	}
	fields := map[string]field{
		"required":         {num: 1, kind: kindBool},
		"in":               {num: 2, kind: kindString},
		"description":      {num: 3, kind: kindString},
		"name":             {num: 4, kind: kindString},
		"type":             {num: 6 - shift, kind: kindString},
		"format":           {num: 7 - shift, kind: kindString},
		"collectionFormat": {num: 9 - shift, kind: kindString},
		"default":          {num: 10 - shift, kind: kindAny},
		"pattern":          {num: 17 - shift, kind: kindString},
		"uniqueItems":      {num: 20 - shift, kind: kindBool},
		"enum":             {num: 21 - shift, kind: kindAnys},
	}
	if query {
		fields["allowEmptyValue"] = field{num: 5, kind: kindBool}
	}
	return messageSpec{name: name, extensions: 23 - shift, fields: fields}
}

// typeItem is TypeItem{value = 1: repeated string} from "string" or
// ["string", "null"].
func typeItem(raw json.RawMessage) ([]byte, error) {
	var types []string
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		types = []string{one}
	} else if err := json.Unmarshal(raw, &types); err != nil {
		return nil, errors.New("type is neither a string nor a list of strings")
	}
	var out []byte
	for _, t := range types {
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendString(out, t)
	}
	return out, nil
}

// itemsItem is ItemsItem{schema = 1: repeated Schema} from one schema or
// a list.
func itemsItem(schema encodeFunc) encodeFunc {
	f := field{num: 1, kind: kindOneOrMore, encode: schema}
	return func(raw json.RawMessage) ([]byte, error) { return f.append(nil, raw) }
}

// additionalProperties is AdditionalPropertiesItem{schema = 1 | boolean = 2}.
func additionalProperties(schema encodeFunc) encodeFunc {
	return func(raw json.RawMessage) ([]byte, error) {
		var b bool
		if err := json.Unmarshal(raw, &b); err == nil {
			out := protowire.AppendTag(nil, 2, protowire.VarintType)
			return protowire.AppendVarint(out, protowire.EncodeBool(b)), nil
		}
		return wrap(1, schema)(raw)
	}
}

// swaggerToProto converts a Swagger 2.0 JSON document to gnostic's
// protobuf Document.
func swaggerToProto(doc []byte) ([]byte, error) {
	out, err := newV2Encoder().document.encode(doc)
	if err != nil {
		return nil, fmt.Errorf("encode openapi v2 protobuf: %w", err)
	}
	return out, nil
}
