package apiclient

import (
	"bytes"
	"errors"
	"fmt"
	"mime"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// mediaProtobuf is Kubernetes' protobuf media type.
const mediaProtobuf = "application/vnd.kubernetes.protobuf"

// protobufMagic starts every protobuf-encoded object on the wire, before a
// runtime.Unknown that names its kind and wraps its bytes (apimachinery's
// protobuf serializer writes and expects the same).
var protobufMagic = []byte{0x6b, 0x38, 0x73, 0x00} // "k8s\x00"

// protoObject is a k8s.io/api type: generated protobuf methods plus the
// type meta that the envelope carries.
type protoObject interface {
	runtime.Object
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

func isProtobuf(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == mediaProtobuf
}

// encodeProtobuf encodes obj as an object of res on the wire.
func encodeProtobuf(res Resource, obj protoObject) ([]byte, error) {
	raw, err := obj.Marshal()
	if err != nil {
		return nil, err
	}
	gv := schema.GroupVersion{Group: res.Group, Version: res.Version}
	u := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: gv.String(), Kind: res.ProtobufKind}, Raw: raw}
	env, err := u.Marshal()
	if err != nil {
		return nil, err
	}
	return append(append(make([]byte, 0, len(protobufMagic)+len(env)), protobufMagic...), env...), nil
}

// decodeProtobuf decodes an object on the wire into out, setting its type
// meta from the envelope as the JSON decoder would from the body.
func decodeProtobuf(b []byte, out protoObject) error {
	env, ok := bytes.CutPrefix(b, protobufMagic)
	if !ok {
		return errors.New("protobuf answer without the k8s envelope")
	}
	var u runtime.Unknown
	if err := u.Unmarshal(env); err != nil {
		return fmt.Errorf("protobuf envelope: %w", err)
	}
	if err := out.Unmarshal(u.Raw); err != nil {
		return fmt.Errorf("protobuf %s: %w", u.Kind, err)
	}
	out.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(u.APIVersion, u.Kind))
	return nil
}
